/**
 * Consuming a Kafka topic as CloudEvents, with ack and nack.
 *
 * Each record is handed out as an envelope. `ack()` marks it done; offsets
 * are committed only up to the first record not yet done, so a crash never
 * skips one. `nack()` retries the record after a backoff, and after the last
 * attempt writes it to the dead-letter topic, so a record that always fails
 * neither blocks its partition nor disappears.
 *
 * Run against local brokers (`deno task brokers` prints their addresses):
 *
 *   KAFKA_BROKERS=127.0.0.1:<port> TOPIC=dx.telemetry \
 *     deno run --allow-net --allow-env examples/consume_kafka.ts
 *
 * Stops on Ctrl-C, or after MAX_RECORDS records when that is set.
 *
 * @module
 */
import { kafkaStream } from "@dataexchange/streams/kafka";

const brokers = (Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:9092").split(",");
const topic = Deno.env.get("TOPIC") ?? "dx.telemetry";
const maxRecords = Number(Deno.env.get("MAX_RECORDS") ?? Infinity);

const controller = new AbortController();
Deno.addSignalListener("SIGINT", () => controller.abort());

let handled = 0;
for await (
  const envelope of kafkaStream({
    brokers,
    groupId: Deno.env.get("GROUP_ID") ?? "example-consumer",
    topics: [topic],
    fromBeginning: true,
    deadLetterTopic: Deno.env.get("DEAD_LETTER_TOPIC") ?? "dx.deadletter",
    nack: { maxAttempts: 3, initialDelayMs: 100 },
    signal: controller.signal,
  })
) {
  const { topic: from, partition, offset } = envelope.record;
  if (envelope.kind === "invalid") {
    // Not a CloudEvent: decoding it again cannot help; dead-letter it now.
    console.log(
      `${from}/${partition}@${offset}: invalid (${envelope.error.code})`,
    );
    envelope.nack(envelope.error);
  } else if (envelope.event.type.endsWith(".poison")) {
    // A processing failure: retried with backoff, then dead-lettered.
    console.log(
      `${from}/${partition}@${offset}: failed, attempt ${envelope.attempt}`,
    );
    envelope.nack(new Error("cannot process this event type"));
  } else {
    console.log(
      `${from}/${partition}@${offset}: ${envelope.event.type} ${envelope.event.id}`,
    );
    envelope.ack();
  }
  if (++handled >= maxRecords) controller.abort();
}
console.log(`handled ${handled} deliveries`);
