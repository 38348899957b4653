/**
 * Throwaway TLS material for tests: a certificate authority, a server
 * certificate for 127.0.0.1 and a client certificate, made with the
 * `openssl` program in a fresh temporary directory.
 *
 * @module
 */

import { probeTool, readEnv, removeIfExists } from "./_process.ts";
import { BrokerUnavailableError } from "./errors.ts";

/** Options of {@linkcode generateTestCertificates}. */
export interface GenerateTestCertificatesOptions {
  /**
   * Common name of the client certificate; a broker that takes the user name
   * from the certificate (Mosquitto's `use_identity_as_username`) sees this.
   * Default `dx-test-client`.
   */
  clientName?: string;
  /** How many days the certificates are valid. Default 2. */
  days?: number;
  /** The `openssl` program. Default env `DX_OPENSSL`, else `openssl` on PATH. */
  openssl?: string;
  /** Aborts the generation; the directory is then deleted. */
  signal?: AbortSignal;
}

/**
 * PEM files made by {@linkcode generateTestCertificates}, all in `dir`.
 * Every key is an unencrypted PKCS#8 `PRIVATE KEY`, which Mosquitto, Kafka
 * (`ssl.keystore.type=PEM`) and Node-style TLS clients all read.
 */
export interface TestCertificates extends AsyncDisposable {
  /** The temporary directory holding the files; deleted by `remove()`. */
  readonly dir: string;
  /** The CA certificate, to trust. */
  readonly caCert: string;
  /** Server certificate, with IP 127.0.0.1 and DNS localhost as subject alternative names. */
  readonly serverCert: string;
  /** The server certificate's key. */
  readonly serverKey: string;
  /**
   * The server certificate followed by its key in one file: Kafka's PEM key
   * store (`ssl.keystore.type=PEM`, `ssl.keystore.location`).
   */
  readonly serverKeystore: string;
  /** Client certificate (extended key usage clientAuth). */
  readonly clientCert: string;
  /** The client certificate's key. */
  readonly clientKey: string;
  /** Common name of the client certificate. */
  readonly clientName: string;
  /** Deletes the directory. Idempotent. */
  remove(): Promise<void>;
}

const INSTALL_HINT =
  "Install it with `apt-get install openssl` (Debian/Ubuntu) or `brew install openssl` (macOS), or set DX_OPENSSL to its path.";

/**
 * The extensions of each certificate. Written to a config file of our own,
 * so the system's openssl.cnf adds nothing.
 */
const OPENSSL_CONFIG =
  `# Written by tools/brokers/tls.ts; deleted with its directory.
[req]
distinguished_name = req_dn
prompt = no

[req_dn]
CN = unused

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

/**
 * Generates, with the `openssl` program, a new CA (EC P-256, its own random
 * name), a server certificate for 127.0.0.1 and a client certificate, both
 * signed by that CA. Each call makes a different CA, so the certificates of
 * one call do not verify against the CA of another: that is how a test gets
 * a server "from an unknown CA".
 *
 * The directory is readable by everyone (0755, files 0644), keys included,
 * because Mosquitto started as root reads them after it dropped to its own
 * user. The material is for tests on 127.0.0.1 only.
 *
 * @param options Client name, validity, program and signal.
 * @returns The paths of the files; `remove()` them or use `await using`.
 * @throws {BrokerUnavailableError} When `openssl` is not installed.
 * @throws {Error} When an `openssl` command fails; the message has its output.
 *
 * @example Make certificates for one test
 * ```ts ignore
 * import { generateTestCertificates } from "./tls.ts";
 *
 * await using certs = await generateTestCertificates({ clientName: "bridge" });
 * console.log(certs.caCert, certs.serverCert, certs.clientCert);
 * ```
 */
export async function generateTestCertificates(
  options: GenerateTestCertificatesOptions = {},
): Promise<TestCertificates> {
  const clientName = options.clientName ?? "dx-test-client";
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(clientName)) {
    throw new RangeError(
      `clientName must be 1 to 64 of A-Z a-z 0-9 . _ -, got ${
        JSON.stringify(clientName)
      }`,
    );
  }
  const days = options.days ?? 2;
  if (!Number.isInteger(days) || days < 1) {
    throw new RangeError(`days must be a positive integer, got ${days}`);
  }
  const openssl = options.openssl ?? readEnv("DX_OPENSSL") ?? "openssl";
  await probeTool(
    openssl,
    ["version"],
    `openssl (\`${openssl}\`) is not installed; the TLS tests generate their certificates with it. ${INSTALL_HINT}`,
  );

  const dir = await Deno.makeTempDir({ prefix: "dx-pki-" });
  const files = {
    dir,
    caCert: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    serverKeystore: `${dir}/server-keystore.pem`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    clientName,
  };
  const run = (args: string[]) => runOpenssl(openssl, args, options.signal);
  try {
    const config = `${dir}/openssl.cnf`;
    await Deno.writeTextFile(config, OPENSSL_CONFIG);
    const caKey = `${dir}/ca.key`;
    const caName = `dx test CA ${crypto.randomUUID().slice(0, 8)}`;
    await run(newKey(caKey));
    await run([
      "req",
      "-new",
      "-x509",
      "-config",
      config,
      "-extensions",
      "ca_ext",
      "-key",
      caKey,
      "-subj",
      `/CN=${caName}`,
      "-days",
      String(days),
      "-sha256",
      "-set_serial",
      randomSerial(),
      "-out",
      files.caCert,
    ]);
    const sign = async (name: string, cn: string, extensions: string) => {
      const key = `${dir}/${name}.key`;
      const csr = `${dir}/${name}.csr`;
      await run(newKey(key));
      await run([
        "req",
        "-new",
        "-config",
        config,
        "-key",
        key,
        "-subj",
        `/CN=${cn}`,
        "-out",
        csr,
      ]);
      await run([
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        files.caCert,
        "-CAkey",
        caKey,
        "-set_serial",
        randomSerial(),
        "-days",
        String(days),
        "-sha256",
        "-extfile",
        config,
        "-extensions",
        extensions,
        "-out",
        `${dir}/${name}.crt`,
      ]);
      await Deno.remove(csr);
    };
    await sign("server", "127.0.0.1", "server_ext");
    await sign("client", clientName, "client_ext");
    await Deno.writeTextFile(
      files.serverKeystore,
      (await Deno.readTextFile(files.serverCert)) +
        (await Deno.readTextFile(files.serverKey)),
    );
    for await (const entry of Deno.readDir(dir)) {
      await Deno.chmod(`${dir}/${entry.name}`, 0o644);
    }
    await Deno.chmod(dir, 0o755);
  } catch (error) {
    await removeIfExists(dir);
    throw error;
  }

  let removing: Promise<void> | undefined;
  const remove = () => removing ??= removeIfExists(dir);
  return { ...files, remove, [Symbol.asyncDispose]: remove };
}

function newKey(path: string): string[] {
  return [
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-out",
    path,
  ];
}

/** A positive 127-bit serial number in hex, as openssl's `-set_serial` takes it. */
function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f;
  bytes[0] |= 0x01;
  return "0x" +
    Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

async function runOpenssl(
  openssl: string,
  args: string[],
  signal: AbortSignal | undefined,
): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(openssl, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal,
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new BrokerUnavailableError(
        `openssl (\`${openssl}\`) is not installed. ${INSTALL_HINT}`,
        { cause: error },
      );
    }
    throw error;
  }
  signal?.throwIfAborted();
  if (!output.success) {
    const decoder = new TextDecoder();
    const said = (decoder.decode(output.stdout) + decoder.decode(output.stderr))
      .trim();
    throw new Error(
      `\`${openssl} ${
        args[0]
      }\` failed with exit code ${output.code} while generating test certificates; ` +
        `check that ${openssl} is OpenSSL 1.1.1 or newer. It said:\n${said}`,
      { cause: new Error(said) },
    );
  }
}
