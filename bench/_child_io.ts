/**
 * The line protocol between the bench and its child processes: a child
 * writes one JSON object per line on stdout (`{"event": ...}`) and reads
 * one command per line on stdin.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Writes one event line on stdout. */
export function emit(event: string, fields: Record<string, unknown> = {}) {
  Deno.stdout.writeSync(
    encoder.encode(JSON.stringify({ event, ...fields }) + "\n"),
  );
}

/** The lines of a byte stream, decoded as UTF-8, without their ends. */
export async function* lines(
  stream: ReadableStream<Uint8Array>,
): AsyncGenerator<string, void, undefined> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let end: number;
    while ((end = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, end);
      rest = rest.slice(end + 1);
    }
  }
  if (rest !== "") yield rest;
}

/** A command from the bench: its name and arguments. */
export interface Command {
  name: string;
  args: string[];
}

/**
 * Commands read from stdin, one per line (`name arg1 arg2`). The iteration
 * ends when stdin closes, which means: stop.
 */
export async function* commands(): AsyncGenerator<Command, void, undefined> {
  for await (const line of lines(Deno.stdin.readable)) {
    const [name, ...args] = line.trim().split(/\s+/);
    if (name) yield { name, args };
  }
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
