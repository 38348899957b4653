/**
 * What the bench ran on: cores, memory, OS, runtime and library versions,
 * and how busy the machine was.
 *
 * @module
 */

/** The machine and software of a run. */
export interface MachineDescription {
  cores: number;
  cpuModel: string;
  memoryMb: number;
  os: string;
  deno: string;
  v8: string;
  typescript: string;
  java: string;
  kafka: string;
  mosquitto: string;
  clients: Record<string, string>;
}

async function run(
  command: string,
  args: string[],
): Promise<{ stdout: string; stderr: string }> {
  try {
    const output = await new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } catch (error) {
    return { stdout: "", stderr: String(error) };
  }
}

/** The 1, 5 and 15 minute load averages, as `uptime` shows them. */
export async function loadAverage(): Promise<string> {
  const { stdout } = await run("cat", ["/proc/loadavg"]);
  return stdout.split(" ").slice(0, 3).join(" ");
}

/**
 * Describes this machine.
 *
 * @param kafkaVersion The Kafka release the brokers run, if known.
 */
export async function describeMachine(
  kafkaVersion: string,
): Promise<MachineDescription> {
  const [cpuinfo, meminfo, uname, java, mosquitto, lock] = await Promise.all([
    run("cat", ["/proc/cpuinfo"]),
    run("cat", ["/proc/meminfo"]),
    run("uname", ["-srm"]),
    run("java", ["-version"]),
    run(Deno.env.get("DX_MOSQUITTO") ?? "mosquitto", ["-h"]),
    Deno.readTextFile(new URL("../deno.lock", import.meta.url)).catch(() =>
      "{}"
    ),
  ]);
  const prettyOs = await Deno.readTextFile("/etc/os-release")
    .then((text) => /PRETTY_NAME="([^"]+)"/.exec(text)?.[1])
    .catch(() => undefined);
  const specifiers: Record<string, string> = JSON.parse(lock).specifiers ?? {};
  const clients: Record<string, string> = {};
  for (const name of ["mqtt", "kafkajs", "@platformatic/kafka"]) {
    const key = Object.keys(specifiers).find((spec) =>
      spec.startsWith(`npm:${name}@`)
    );
    clients[name] = key ? specifiers[key] : "unknown";
  }
  return {
    cores: navigator.hardwareConcurrency,
    cpuModel: /model name\s*:\s*(.+)/.exec(cpuinfo.stdout)?.[1]?.trim() ??
      "unknown",
    memoryMb: Math.round(
      Number(/MemTotal:\s+(\d+)/.exec(meminfo.stdout)?.[1] ?? 0) / 1024,
    ),
    os: [prettyOs, uname.stdout.trim()].filter(Boolean).join(", "),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    java: java.stderr.split("\n")[0]?.trim() || "unknown",
    kafka: kafkaVersion,
    mosquitto:
      /mosquitto version (\S+)/.exec(mosquitto.stdout + mosquitto.stderr)
        ?.[1] ?? "unknown",
    clients,
  };
}
