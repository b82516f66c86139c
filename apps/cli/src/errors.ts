/** Documented exit codes (docs/cli.md). */
export const EXIT = { ok: 0, error: 1, usage: 2, interrupted: 130 } as const;

/** An error the CLI reports as `error: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.error,
    /** The API's error code, or one of the CLI's own (`not_logged_in`, `network`, …). */
    readonly code: string = "error",
    readonly details: unknown = null,
  ) {
    super(message);
  }
}

/** An error answer of the REST API: `{"error": {code, message, details}}`. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    details: unknown,
  ) {
    super(message, EXIT.error, code, details);
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage, "usage");
}
