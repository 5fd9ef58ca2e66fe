// The request-token dashboard: a plain script over /graphql. The API key lives in sessionStorage only (this tab), data
// reaches the page through textContent (never as HTML), and charts are drawn with Chart.js served by this server.
'use strict';

(function () {
  const KEY_STORAGE = 'request-token.api-key';
  const PAGE_SIZE = 15;
  /** Who may revoke: the one place to change when key permissions are refined. */
  const REVOKE_PERMISSIONS = ['admin', 'issue'];
  const COLORS = {
    issued: '#2f5bd3',
    redemptions: '#1f9d55',
    refusals: '#d64545',
    status: { status1xx: '#8b5cf6', status2xx: '#1f9d55', status3xx: '#2f5bd3', status4xx: '#d98a1c', status5xx: '#d64545', unrecorded: '#c3cad4' },
    reasons: ['#d64545', '#e07b39', '#d9a21c', '#8b5cf6', '#4f7bd9', '#2aa198', '#8a6d5a', '#b04b8f', '#6b7280', '#3b8a5a'],
  };
  const STATUS_LABELS = { status2xx: '2xx', status3xx: '3xx', status4xx: '4xx', status5xx: '5xx', status1xx: '1xx', unrecorded: 'Not recorded' };
  const RANGES = {
    '24h': { bucket: 'HOUR', count: 24, ms: 3_600_000 },
    '7d': { bucket: 'DAY', count: 7, ms: 86_400_000 },
    '30d': { bucket: 'DAY', count: 30, ms: 86_400_000 },
  };

  const $ = (id) => document.getElementById(id);
  const state = { key: null, viewer: null, range: '7d', scope: '', charts: {}, logCursors: [null], logPage: 0, logFilter: {} };

  /** Builds an element; children are nodes or text (always inserted as text). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') el.className = value;
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  class AuthError extends Error {}

  async function gql(query, variables) {
    const res = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${state.key}` },
      body: JSON.stringify({ query, variables }),
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      throw new Error(`The server answered ${res.status} without JSON.`);
    }
    const first = body.errors && body.errors[0];
    if (res.status === 401 || (first && first.extensions && first.extensions.code === 'UNAUTHENTICATED')) {
      throw new AuthError(first ? first.message : 'The API key was refused.');
    }
    if (first) throw new Error(first.message);
    return body.data;
  }

  // ---- formatting (all times in UTC, as the statistics are cut in UTC) ----
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad = (n) => String(n).padStart(2, '0');
  const fmtTime = (iso) => {
    const d = new Date(iso);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  };
  const fmtBucket = (iso, bucket) => {
    const d = new Date(iso);
    const day = `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}`;
    return bucket === 'HOUR' ? `${day} ${pad(d.getUTCHours())}:00` : day;
  };
  const fmtNumber = (n) => n.toLocaleString('en-US');
  const humanCode = (code) => code.toLowerCase().replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

  function statusBadge(status) {
    const kind = { ACTIVE: 'ok', REVOKED: 'bad', EXPIRED: 'warn', EXHAUSTED: 'neutral', NOT_YET_VALID: 'neutral' }[status] || 'neutral';
    return h('span', { class: `badge ${kind}` }, humanCode(status));
  }
  function outcomeBadge(errorCode) {
    return errorCode ? h('span', { class: 'badge bad', title: errorCode }, humanCode(errorCode)) : h('span', { class: 'badge ok' }, 'Redeemed');
  }

  function showError(id, error) {
    const el = $(id);
    if (!error) {
      el.hidden = true;
      el.textContent = '';
      return;
    }
    el.hidden = false;
    el.textContent = error.message || String(error);
  }

  function handleFailure(error, where) {
    if (error instanceof AuthError) {
      signOut(error.message);
      return;
    }
    showError(where, error);
  }

  // ---- key handling ----
  async function connect(key) {
    state.key = key;
    try {
      const data = await gql('query Viewer { viewer { keyId name permissions } }');
      state.viewer = data.viewer;
    } catch (error) {
      state.key = null;
      sessionStorage.removeItem(KEY_STORAGE);
      showError('key-error', error instanceof AuthError ? new Error(`That key was refused: ${error.message}`) : error);
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    showError('key-error', null);
    $('api-key').value = '';
    $('key-form').hidden = true;
    $('viewer').hidden = false;
    $('viewer-name').textContent = state.viewer.name || state.viewer.keyId;
    $('viewer-perms').replaceChildren(...state.viewer.permissions.map((p) => h('span', {}, p)));
    $('welcome').hidden = true;
    $('board').hidden = false;
    await Promise.all([loadStats(), loadLogs()]);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.viewer = null;
    $('key-form').hidden = false;
    $('viewer').hidden = true;
    $('board').hidden = true;
    $('welcome').hidden = false;
    $('lookup-result').replaceChildren();
    showError('key-error', message ? new Error(message) : null);
  }

  const mayRevoke = () => !!state.viewer && state.viewer.permissions.some((p) => REVOKE_PERMISSIONS.includes(p));

  // ---- statistics and charts ----
  const STATS_QUERY = `query DashboardStats($filter: UsageStatsFilter, $bucket: StatsBucket!) {
    usageStats(filter: $filter, bucket: $bucket) {
      bucket timeZone since until
      buckets { start issued redemptions refusals }
      totals {
        issued redemptions refusals
        refusalsByCode { code count }
        responseStatuses { status1xx status2xx status3xx status4xx status5xx unrecorded }
      }
      scopes { scope issued redemptions refusals }
    }
  }`;

  function windowFor(rangeName) {
    const range = RANGES[rangeName];
    const now = Date.now();
    const since = new Date(Math.floor(now / range.ms) * range.ms - (range.count - 1) * range.ms);
    return { bucket: range.bucket, since: since.toISOString() };
  }

  async function loadStats() {
    const { bucket, since } = windowFor(state.range);
    const filter = { since };
    if (state.scope) filter.scope = state.scope;
    try {
      const data = await gql(STATS_QUERY, { filter, bucket });
      showError('board-error', null);
      renderStats(data.usageStats);
      $('updated').textContent = `Updated ${fmtTime(new Date().toISOString()).slice(11)} UTC`;
    } catch (error) {
      handleFailure(error, 'board-error');
    }
  }

  function chart(id, config) {
    const existing = state.charts[id];
    if (existing) {
      existing.data = config.data;
      existing.options = config.options;
      existing.update();
      return existing;
    }
    state.charts[id] = new Chart($(id), config);
    return state.charts[id];
  }

  const baseOptions = (extra) =>
    Object.assign(
      {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12, boxHeight: 12, padding: 14 } } },
        // A handful of points must not turn into slabs.
        datasets: { bar: { maxBarThickness: 34 } },
      },
      extra,
    );

  function renderStats(stats) {
    const t = stats.totals;
    $('kpi-issued').textContent = fmtNumber(t.issued);
    $('kpi-redemptions').textContent = fmtNumber(t.redemptions);
    $('kpi-refusals').textContent = fmtNumber(t.refusals);
    const attempts = t.redemptions + t.refusals;
    $('kpi-rate').textContent = attempts ? `${((100 * t.refusals) / attempts).toFixed(1)} %` : '–';
    const s = t.responseStatuses;
    $('kpi-status').textContent = `${fmtNumber(s.status2xx)} / ${fmtNumber(s.status4xx + s.status5xx)}`;
    $('time-note').textContent = `· per ${stats.bucket === 'HOUR' ? 'hour' : 'day'}, ${stats.timeZone}${state.scope ? ` · scope ${state.scope}` : ''}`;

    // Keep the scope list in step with the data (the selected scope stays even when it has no activity).
    const select = $('scope-select');
    const scopes = stats.scopes.map((x) => x.scope).filter((x) => x !== null);
    if (!state.scope) {
      select.replaceChildren(h('option', { value: '' }, 'All scopes'), ...scopes.sort().map((x) => h('option', { value: x }, x)));
    }
    select.value = state.scope;

    const labels = stats.buckets.map((b) => fmtBucket(b.start, stats.bucket));
    chart('chart-time', {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { label: 'Redemptions', data: stats.buckets.map((b) => b.redemptions), backgroundColor: COLORS.redemptions, stack: 'use', borderRadius: 3, order: 1 },
          { label: 'Refusals', data: stats.buckets.map((b) => b.refusals), backgroundColor: COLORS.refusals, stack: 'use', borderRadius: 3, order: 1 },
          { label: 'Issued', data: stats.buckets.map((b) => b.issued), type: 'line', borderColor: COLORS.issued, backgroundColor: COLORS.issued, pointRadius: 2, cubicInterpolationMode: 'monotone', borderWidth: 2, order: 0 },
        ],
      },
      options: baseOptions({
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 14 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, grid: { color: '#eef1f5' } },
        },
      }),
    });

    const reasons = t.refusalsByCode;
    $('reasons-empty').hidden = reasons.length > 0;
    chart('chart-reasons', {
      type: 'bar',
      data: {
        labels: reasons.map((r) => humanCode(r.code)),
        datasets: [{ label: 'Refusals', data: reasons.map((r) => r.count), backgroundColor: reasons.map((_, i) => COLORS.reasons[i % COLORS.reasons.length]), borderRadius: 3 }],
      },
      options: baseOptions({
        indexAxis: 'y',
        plugins: { legend: { display: false } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: '#eef1f5' } }, y: { grid: { display: false } } },
      }),
    });

    const topScopes = stats.scopes.slice(0, 10);
    chart('chart-scopes', {
      type: 'bar',
      data: {
        labels: topScopes.map((x) => (x.scope === null ? '(no token)' : x.scope)),
        datasets: [
          { label: 'Issued', data: topScopes.map((x) => x.issued), backgroundColor: COLORS.issued, borderRadius: 3 },
          { label: 'Redemptions', data: topScopes.map((x) => x.redemptions), backgroundColor: COLORS.redemptions, borderRadius: 3 },
          { label: 'Refusals', data: topScopes.map((x) => x.refusals), backgroundColor: COLORS.refusals, borderRadius: 3 },
        ],
      },
      options: baseOptions({
        scales: {
          x: { grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0 }, grid: { color: '#eef1f5' } },
        },
      }),
    });

    const statusKeys = ['status2xx', 'status3xx', 'status4xx', 'status5xx', 'status1xx', 'unrecorded'].filter(
      (k) => k !== 'status1xx' || s.status1xx > 0,
    );
    chart('chart-status', {
      type: 'doughnut',
      data: {
        labels: statusKeys.map((k) => `${STATUS_LABELS[k]} · ${fmtNumber(s[k])}`),
        datasets: [{ data: statusKeys.map((k) => s[k]), backgroundColor: statusKeys.map((k) => COLORS.status[k]), borderWidth: 1 }],
      },
      options: baseOptions({
        cutout: '62%',
        layout: { padding: { top: 6, bottom: 6 } },
        plugins: { legend: { position: 'right', labels: { boxWidth: 12, boxHeight: 12, padding: 12 } } },
      }),
    });
  }

  // ---- log table ----
  const LOGS_QUERY = `query DashboardLogs($filter: RequestTokenLogFilter, $first: Int, $after: String) {
    requestTokenLogs(filter: $filter, first: $first, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id timestamp errorCode userId clientIp userAgent statusCode token { id scope } } }
    }
  }`;

  function readLogFilter() {
    const form = $('log-filters');
    const get = (name) => form.elements[name].value.trim();
    const filter = {};
    if (get('scope')) filter.scope = get('scope');
    if (get('outcome')) filter.failed = get('outcome') === 'refused';
    if (get('tokenId')) filter.tokenId = get('tokenId');
    if (get('userId')) filter.userId = get('userId');
    if (get('statusCode')) {
      const code = Number(get('statusCode'));
      if (!Number.isInteger(code)) throw new Error('Status must be a number, e.g. 200.');
      filter.statusCode = code;
    }
    return filter;
  }

  async function loadLogs() {
    const tbody = $('logs').tBodies[0];
    try {
      const data = await gql(LOGS_QUERY, { filter: state.logFilter, first: PAGE_SIZE, after: state.logCursors[state.logPage] });
      const page = data.requestTokenLogs;
      state.logCursors[state.logPage + 1] = page.pageInfo.endCursor;
      tbody.replaceChildren(
        ...(page.edges.length
          ? page.edges.map(({ node }) =>
              h(
                'tr',
                {},
                h('td', {}, h('span', { class: 'mono' }, fmtTime(node.timestamp))),
                h('td', {}, outcomeBadge(node.errorCode)),
                h('td', {}, node.token ? h('a', { class: 'token-link', href: '#', 'data-token': node.token.id, title: 'Look up this token' }, `#${node.token.id}`) : h('span', { class: 'muted' }, '—')),
                h('td', { class: 'trunc', title: node.token ? node.token.scope : '' }, node.token ? node.token.scope : '—'),
                h('td', { class: 'trunc', title: node.userId || '' }, node.userId || '—'),
                h('td', { title: node.userAgent || '' }, node.clientIp || '—'),
                h('td', { class: 'num' }, node.statusCode === null ? '—' : String(node.statusCode)),
              ),
            )
          : [h('tr', {}, h('td', { colspan: 7, class: 'empty-row' }, 'No log entries match.'))]),
      );
      const from = state.logPage * PAGE_SIZE + (page.edges.length ? 1 : 0);
      const to = state.logPage * PAGE_SIZE + page.edges.length;
      $('logs-count').textContent = `${fmtNumber(page.totalCount)} entries`;
      $('page-info').textContent = page.totalCount ? `${from}–${to} of ${fmtNumber(page.totalCount)}` : '';
      $('newer').disabled = state.logPage === 0;
      $('older').disabled = !page.pageInfo.hasNextPage;
    } catch (error) {
      handleFailure(error, 'board-error');
    }
  }

  // ---- lookup ----
  const LOOKUP_QUERY = `query DashboardLookup($jwt: String!) {
    findRequestTokenByJwt(jwt: $jwt) {
      __typename
      ... on RequestTokenLookup {
        token {
          id scope targetUrl userId loginMode maxUses usedToDate issuedAt notBefore expiresAt revokedAt status
          logs(first: 20) { totalCount edges { node { id timestamp errorCode statusCode clientIp } } }
        }
        claims { raw }
      }
      ... on Error { code message }
    }
  }`;

  /** Accepts a bare JWT or a tokenised link (?rt=…). */
  function jwtFrom(text) {
    const trimmed = text.trim();
    if (/^https?:\/\//i.test(trimmed)) {
      try {
        return new URL(trimmed).searchParams.get('rt') || trimmed;
      } catch {
        return trimmed;
      }
    }
    return trimmed;
  }

  async function lookup(jwt) {
    const out = $('lookup-result');
    if (!jwt) return;
    out.replaceChildren(h('p', { class: 'muted' }, 'Looking up…'));
    try {
      const data = await gql(LOOKUP_QUERY, { jwt });
      const result = data.findRequestTokenByJwt;
      if (result.__typename !== 'RequestTokenLookup') {
        out.replaceChildren(h('p', { class: 'error', role: 'alert' }, `${result.message} (${result.code})`));
        return;
      }
      renderLookup(result, jwt);
    } catch (error) {
      if (error instanceof AuthError) return signOut(error.message);
      out.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
    }
  }

  // By id, the token is shown without its JWT: a stored token's JWT is a working link, for ISSUE keys only (and a
  // dashboard key reads).
  async function lookupById(id) {
    try {
      // The same token fields as LOOKUP_QUERY's.
      const data = await gql(
        `query DashboardToken($id: ID!) {
          requestToken(id: $id) {
            id scope targetUrl userId loginMode maxUses usedToDate issuedAt notBefore expiresAt revokedAt status
          logs(first: 20) { totalCount edges { node { id timestamp errorCode statusCode clientIp } } }
          }
        }`,
        { id },
      );
      if (!data.requestToken) throw new Error(`Token #${id} not found.`);
      renderLookup({ token: data.requestToken, claims: null }, null);
      $('lookup-card').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    } catch (error) {
      if (error instanceof AuthError) return signOut(error.message);
      $('lookup-result').replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message));
    }
  }

  function renderLookup({ token, claims }, jwt) {
    const fact = (label, value) => [h('dt', {}, label), h('dd', {}, value === null || value === undefined || value === '' ? '—' : value)];
    const history = token.logs.edges.map(({ node }) =>
      h('li', {}, h('span', { class: 'mono' }, fmtTime(node.timestamp)), outcomeBadge(node.errorCode), h('span', { class: 'muted' }, node.statusCode === null ? '' : String(node.statusCode))),
    );
    const actions = h('div', { class: 'actions' });
    if (mayRevoke() && token.status !== 'REVOKED') {
      const button = h('button', { type: 'button', class: 'danger', id: 'revoke-token' }, 'Revoke this token');
      button.addEventListener('click', async () => {
        if (!window.confirm(`Revoke token #${token.id}? Its link stops working at once.`)) return;
        button.disabled = true;
        try {
          const data = await gql(
            'mutation DashboardRevoke($id: ID!) { revokeRequestToken(id: $id) { __typename ... on Error { message } } }',
            { id: token.id },
          );
          const result = data.revokeRequestToken;
          if (result.__typename !== 'RevokeRequestTokenSuccess') throw new Error(result.message);
          await (jwt ? lookup(jwt) : lookupById(token.id));
        } catch (error) {
          button.disabled = false;
          actions.append(h('span', { class: 'error' }, error.message));
        }
      });
      actions.append(button);
    }
    $('lookup-result').replaceChildren(
      h('div', { class: 'lookup-head' }, h('strong', {}, `Token #${token.id}`), statusBadge(token.status)),
      h(
        'dl',
        { class: 'facts' },
        fact('Scope', token.scope),
        fact('User', token.userId),
        fact('Login mode', humanCode(token.loginMode)),
        fact('Uses', `${token.usedToDate} of ${token.maxUses}`),
        fact('Issued', `${fmtTime(token.issuedAt)} UTC`),
        fact('Expires', token.expiresAt ? `${fmtTime(token.expiresAt)} UTC` : 'never'),
        token.notBefore ? fact('Not before', `${fmtTime(token.notBefore)} UTC`) : [],
        token.revokedAt ? fact('Revoked', `${fmtTime(token.revokedAt)} UTC`) : [],
        token.targetUrl ? fact('Target', token.targetUrl) : [],
      ),
      claims ? h('details', {}, h('summary', {}, 'Decoded JWT claims'), h('pre', { class: 'claims' }, JSON.stringify(claims.raw, null, 2))) : [],
      h('h3', {}, `History (${token.logs.totalCount})`),
      history.length ? h('ul', { class: 'history' }, history) : h('p', { class: 'muted' }, 'Never used.'),
      actions,
    );
  }

  // ---- wiring ----
  function setRange(name) {
    state.range = name;
    for (const button of document.querySelectorAll('[data-range]')) {
      button.setAttribute('aria-pressed', String(button.dataset.range === name));
    }
  }

  function resetLogPaging() {
    state.logCursors = [null];
    state.logPage = 0;
  }

  document.addEventListener('DOMContentLoaded', () => {
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = '#66717f';
    setRange(state.range);

    $('key-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const key = $('api-key').value.trim();
      if (key) void connect(key);
    });
    $('sign-out').addEventListener('click', () => signOut());
    for (const button of document.querySelectorAll('[data-range]')) {
      button.addEventListener('click', () => {
        setRange(button.dataset.range);
        void loadStats();
      });
    }
    $('scope-select').addEventListener('change', (event) => {
      state.scope = event.target.value;
      void loadStats();
    });
    $('refresh').addEventListener('click', () => {
      void loadStats();
      void loadLogs();
    });
    $('log-filters').addEventListener('submit', (event) => {
      event.preventDefault();
      try {
        state.logFilter = readLogFilter();
      } catch (error) {
        return showError('board-error', error);
      }
      resetLogPaging();
      void loadLogs();
    });
    $('log-filters').addEventListener('reset', () => {
      state.logFilter = {};
      resetLogPaging();
      setTimeout(() => void loadLogs());
    });
    $('log-filters').elements.outcome.addEventListener('change', () => $('log-filters').requestSubmit());
    $('newer').addEventListener('click', () => {
      state.logPage = Math.max(0, state.logPage - 1);
      void loadLogs();
    });
    $('older').addEventListener('click', () => {
      state.logPage += 1;
      void loadLogs();
    });
    $('logs').addEventListener('click', (event) => {
      const link = event.target.closest('a[data-token]');
      if (!link) return;
      event.preventDefault();
      void lookupById(link.dataset.token);
    });
    $('lookup-form').addEventListener('submit', (event) => {
      event.preventDefault();
      void lookup(jwtFrom($('lookup-jwt').value));
    });

    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) void connect(saved);
  });
})();
