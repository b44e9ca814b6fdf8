/**
 * The exit statuses of `vm-metrics`, documented in `--help` and the README. systemd's unit does not
 * restart on `usage` or `cannotListen` (RestartPreventExitStatus=), which would only fail again.
 *
 * @since 0.1.0
 */

/** @category constants */
export const ExitCode = {
  ok: 0,
  /** An unexpected failure (a bug, or the runtime failed). */
  internal: 1,
  /** A bad flag, environment value, token (file), or TLS certificate or key file. */
  usage: 2,
  /** `stats <id>`: no instance matches the id, or several do. */
  notFound: 3,
  /** `list` / `stats`: the instance source cannot be read at all. */
  sourceUnavailable: 4,
  /** `serve`: the address is in use, not this host's, or not allowed. */
  cannotListen: 5
} as const

/** The one-line summary shown by `--help`. @category constants */
export const summary =
  "exit status: 0 ok, 1 internal error, 2 usage error (flag, value, token, TLS certificate or key), 3 no such instance, 4 instance source unreadable, 5 cannot listen"
