/**
 * GraphiQL with an API-key bar above it. The key is entered once and sent from every tab (GraphiQL's
 * `additionalHeaders`), and GraphiQL starts only once there is a key, so opening the page sends nothing that could
 * answer 401. The key is kept like the dashboard keeps it (sessionStorage, this browser tab, the same name), so going
 * from the dashboard to GraphiQL needs no second paste.
 */
const KEY_BAR = `<style>
  html, body { margin: 0; height: 100%; }
  body { display: flex; flex-direction: column; }
  #root { flex: 1; min-height: 0; }
  #rt-key { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; padding: .45rem .8rem;
    font: 14px/1.4 system-ui, sans-serif; border-bottom: 1px solid #d0d7de; background: #f6f8fa; color: #1f2328; }
  #rt-key input { flex: 1 1 16rem; max-width: 34rem; font: inherit; padding: .25rem .45rem; }
  #rt-key button { font: inherit; padding: .25rem .8rem; cursor: pointer; }
  #rt-key .rt-hint { flex-basis: 100%; color: #59636e; font-size: 13px; }
  #rt-key code { font-size: 12px; }
</style>
<script>
  // Starts GraphiQL (called where the page would call YogaGraphiQL.renderYogaGraphiQL) once an API key is known.
  function requestTokenGraphiQL(root, options) {
    var STORAGE = 'request-token.api-key';
    var bar = document.createElement('form');
    bar.id = 'rt-key';
    bar.setAttribute('autocomplete', 'off');
    root.parentNode.insertBefore(bar, root);
    function el(tag, text, attrs) {
      var node = document.createElement(tag);
      if (text) node.textContent = text;
      for (var name in attrs || {}) node.setAttribute(name, attrs[name]);
      return node;
    }
    function start(key) {
      bar.replaceChildren(
        el('span', 'API key ' + key.split('_').slice(0, 2).join('_') + '_… is sent from every tab.'),
        el('button', 'Change key', { type: 'button', id: 'rt-key-change' }),
      );
      bar.querySelector('button').addEventListener('click', function () {
        sessionStorage.removeItem(STORAGE);
        location.reload();
      });
      var headers = Object.assign({}, options.additionalHeaders, { Authorization: 'Bearer ' + key });
      YogaGraphiQL.renderYogaGraphiQL(root, Object.assign({}, options, { additionalHeaders: headers }));
    }
    var saved = sessionStorage.getItem(STORAGE);
    if (saved) return start(saved);
    var input = el('input', '', { type: 'password', id: 'rt-key-input', placeholder: 'Paste an API key: rt_…', 'aria-label': 'API key', spellcheck: 'false' });
    var hint = el('span', '', { class: 'rt-hint' });
    hint.append(
      'A first npm start prints an admin key and writes it to ',
      el('code', 'DATA_DIR/admin-api-key'),
      ' (./.data by default). It is kept in this browser tab only, as on the dashboard, and nothing is sent before it is entered.',
    );
    bar.replaceChildren(el('label', 'API key', { for: 'rt-key-input' }), input, el('button', 'Use this key', { type: 'submit' }), hint);
    bar.addEventListener('submit', function (event) {
      event.preventDefault();
      var key = input.value.trim();
      if (!key) return input.focus();
      sessionStorage.setItem(STORAGE, key);
      start(key);
    }, { once: false });
    input.focus();
  }
</script>
`;

/** The GraphiQL page from @graphql-yoga/render-graphiql, started through the key bar. */
export function withApiKeyBar(html: string): string {
  const call = 'YogaGraphiQL.renderYogaGraphiQL(';
  const at = html.lastIndexOf(call);
  // The render call is the package's own markup (pinned version); without it, serve the page unchanged.
  if (at < 0 || !html.includes('</head>')) return html;
  const started = `${html.slice(0, at)}requestTokenGraphiQL(${html.slice(at + call.length)}`;
  return started.replace('</head>', `${KEY_BAR}</head>`);
}
