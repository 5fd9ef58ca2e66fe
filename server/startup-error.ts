/**
 * A start-up failure the operator can fix: its message is one line saying what to do, printed without a stack trace.
 * Anything else that fails at start-up is unexpected and keeps its stack.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}
