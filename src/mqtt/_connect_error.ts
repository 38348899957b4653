/**
 * Readable accounts of failed MQTT connection attempts: what failed, and what
 * to do about it, for the reconnection log.
 *
 * @module
 */
import { TLS_VERIFY_CODES } from "../_tls.ts";

/** CONNACK codes of a refused login: MQTT 3.1.1 §3.2.2.3, MQTT 5 §3.2.2.2. */
const BAD_CREDENTIALS = new Set([4, 0x86]);
const NOT_AUTHORIZED = new Set([5, 0x87]);

/** What {@linkcode describeConnectError} says a failure is about. */
export interface ConnectErrorContext {
  /** The user name the client logs in with, if any. */
  username?: string | undefined;
}

/**
 * Describes why an MQTT connection attempt failed, with what to do: a login
 * the broker refused (CONNACK reason code), a broker certificate that does
 * not verify, a client certificate the broker asks for, nothing listening.
 * Other errors give their message. Never includes a password.
 *
 * @param error What MQTT.js reported for the attempt.
 * @param context The user name, to name it in the text.
 * @returns One sentence, without a final period.
 */
export function describeConnectError(
  error: unknown,
  context: ConnectErrorContext = {},
): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const user = context.username === undefined
    ? "an anonymous client"
    : `user "${context.username}"`;
  if (typeof code === "number") {
    const refused = `${error.message} (CONNACK reason code ${code})`;
    if (BAD_CREDENTIALS.has(code)) {
      return `the broker refused the user name or password of ${user}: ${refused}; check the user name and password`;
    }
    if (NOT_AUTHORIZED.has(code)) {
      return `the broker refused to let ${user} connect: ${refused}; check the user name and password (a broker such as Mosquitto answers a wrong one with this code), or the client certificate, and the broker's access rules`;
    }
    return `the broker refused the connection: ${refused}`;
  }
  if (typeof code === "string" && TLS_VERIFY_CODES.has(code)) {
    return `the broker's TLS certificate did not verify (${code}: ${error.message}); trust the CA that signed it (the TLS ca file), and connect by a host name or IP address the certificate names`;
  }
  if (/CertificateRequired|certificate required/i.test(error.message)) {
    return `the broker wants a client certificate (${error.message}); give a TLS certificate and its key`;
  }
  if (code === "ECONNREFUSED") {
    return `nothing accepts connections there (${error.message}); check the host and port, and that the broker runs`;
  }
  if (/before secure TLS connection was established/.test(error.message)) {
    return `the broker closed the connection during the TLS handshake (${error.message}); check that the port is a TLS listener and the URL scheme is right (mqtts:// for TLS, mqtt:// without)`;
  }
  return error.message;
}

/**
 * The user name MQTT.js logs in with: the one in the URL when it has one
 * (MQTT.js prefers it), else the `username` option.
 *
 * @param url The broker URL.
 * @param username The `username` client option.
 * @returns The user name, or `undefined` for an anonymous client.
 */
export function loginName(
  url: string,
  username: string | undefined,
): string | undefined {
  try {
    const fromUrl = decodeURIComponent(new URL(url).username);
    return fromUrl === "" ? username : fromUrl;
  } catch {
    return username;
  }
}
