// The errors a Missive client sees: the server's documented codes (docs/protocol.md §9), and
// the link failing underneath a request.

/** The closed set of error codes; numbers never change, new ones may be appended. */
export enum Code {
  Ok = 0,
  BadRequest = 1,
  UnknownCommand = 2,
  Unauthenticated = 3,
  InvalidCredentials = 4,
  InvalidArgument = 5,
  NotFound = 6,
  AlreadyExists = 7,
  BadSyncKey = 8,
  FrameTooLarge = 9,
  BadFrame = 10,
  Overloaded = 11,
  DeadlineExceeded = 12,
  Unavailable = 13,
  Internal = 14,
  FailedPrecondition = 15,
  Aborted = 16,
  Blocked = 17,
  NotFriends = 18,
  NotMember = 19,
  PermissionDenied = 20,
  LimitExceeded = 21,
  TooLate = 22,
  AccountDisabled = 23,
  RateLimited = 24,
}

const NAMES: readonly string[] = [
  "ok",
  "bad_request",
  "unknown_command",
  "unauthenticated",
  "invalid_credentials",
  "invalid_argument",
  "not_found",
  "already_exists",
  "bad_sync_key",
  "frame_too_large",
  "bad_frame",
  "overloaded",
  "deadline_exceeded",
  "unavailable",
  "internal",
  "failed_precondition",
  "aborted",
  "blocked",
  "not_friends",
  "not_member",
  "permission_denied",
  "limit_exceeded",
  "too_late",
  "account_disabled",
  "rate_limited",
];

/** A code by its number; a number this client does not know is `Internal` (§2.4). */
export function codeOf(number: number): Code {
  return number > 0 && number < NAMES.length ? (number as Code) : Code.Internal;
}

/** A code by its name (`x-missive-code`); an unknown name is `Internal`. */
export function codeNamed(name: string): Code {
  const index = NAMES.indexOf(name);
  return index > 0 ? (index as Code) : Code.Internal;
}

export function codeName(code: Code): string {
  return NAMES[code] ?? "internal";
}

/** An error answer from the server. */
export class MissiveError extends Error {
  override name = "MissiveError";
  /** The code as the server sent it, even one this client does not know. */
  readonly number: number;

  constructor(
    readonly code: Code,
    message: string,
    /** RATE_LIMITED: how long to wait before trying again. */
    readonly retryAfterMs = 0,
    number: number = code,
  ) {
    super(`${codeName(code)}: ${message}`);
    this.number = number;
  }

  /** Whether the same request may succeed later without any change. */
  get transient(): boolean {
    return [Code.Overloaded, Code.Unavailable, Code.DeadlineExceeded, Code.Aborted, Code.RateLimited].includes(
      this.code,
    );
  }
}

/** The link went away (or never came) before the answer arrived; the request may or may not
 * have been carried out. */
export class LinkError extends Error {
  override name = "LinkError";
}

/** The error an error answer carries: its status (the code's number) and its `Error` body. */
export function errorOf(
  status: number,
  body: { message: string; retryAfterMs: bigint } | undefined,
): MissiveError {
  const code = codeOf(status);
  return new MissiveError(code, body?.message ?? "", Number(body?.retryAfterMs ?? 0n), status);
}
