// Preloaded with `node --import` to give a process a wrong clock (CLOCK_SKEW_MS, may be negative): every `new Date()`
// and `Date.now()` in it is off by that much. Used to prove that servers with skewed clocks agree on time decisions.
const skew = Number(process.env.CLOCK_SKEW_MS ?? 0);
if (skew) {
  const RealDate = Date;
  class SkewedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(RealDate.now() + skew);
      else super(...args);
    }
    static now() {
      return RealDate.now() + skew;
    }
  }
  globalThis.Date = SkewedDate;
}
