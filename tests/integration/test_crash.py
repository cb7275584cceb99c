"""Crashes: kill -9 at awkward moments loses nothing and duplicates nothing, because effects,
emitted messages and checkpoints commit in one transaction (docs/ARCHITECTURE.md)."""
import time

import harness
from harness import Suite, check, check_eq, check_ticks, wait_until

suite = Suite("crash")


def applied(consumer):
    return consumer.scalar("select count(*) from ticks") or 0


def no_duplicates(consumer):
    total, distinct = consumer.query("select count(*), count(distinct i) from ticks")[0]
    check_eq(total, distinct, "ticks applied vs distinct ticks (duplicates?)")
    return total


def kill_rounds(consumer, thresholds, expected):
    """Starts the consumer, kill -9s it once it has applied `threshold` ticks, for each
    threshold; returns how many kills landed before it was done."""
    mid_way = 0
    for threshold in thresholds:
        # Wait for the host to answer before reading its database: see harness.Host.start.
        consumer.start()
        wait_until(lambda: applied(consumer) >= threshold, 30,
                   "the consumer to apply %d ticks" % threshold, interval=0.01)
        consumer.kill9()
        n = no_duplicates(consumer)
        print("    killed the consumer at %d of %d applied" % (n, expected))
        if n < expected:
            mid_way += 1
    return mid_way


@suite.test
def consumer_killed_while_catching_up(w):
    N = 50000
    # Slow enough that a kill lands near its threshold: each start applies what comes in while
    # the host is waited for (polled every 100 ms), about 20,000 ticks at a tenth of this work,
    # which took the second kill past the last tick in two runs of three.
    consumer = w.host("consumer", w.scripts("consumer", {
        "consumer.lua": harness.consumer_lua(work=30000)}))
    consumer.stop()
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    producer.send("producer", "Burst", {"n": N})
    wait_until(lambda: producer.head() == N + 1, 60, "the producer to publish %d ticks" % N)
    mid_way = kill_rounds(consumer, [6000, 19000, 32000], N)
    check(mid_way >= 2, "at least two kills should land mid-way (%d did)" % mid_way)
    consumer.start()
    wait_until(lambda: applied(consumer) >= N, 60, "the consumer to finish", interval=0.1)
    check_ticks(consumer, N)
    check_eq(consumer.checkpoint("producer"), N + 1, "consumer's checkpoint for producer")
    time.sleep(0.5)
    check_eq(applied(consumer), N, "ticks after settling")


@suite.test
def consumer_killed_during_a_live_burst(w):
    N = 30000
    consumer = w.host("consumer", w.scripts("consumer", {
        "consumer.lua": harness.consumer_lua(work=3000)}))
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    wait_until(lambda: "producer" in consumer.status()["peers"], 10, "consumer to find producer")
    producer.send("producer", "Burst", {"n": N // 2})
    producer.send("producer", "Burst", {"from": N // 2 + 1, "n": N // 2})
    wait_until(lambda: applied(consumer) >= 4000, 30, "the consumer to get going", interval=0.01)
    consumer.kill9()
    n = no_duplicates(consumer)
    print("    killed the consumer at %d of %d applied" % (n, N))
    mid_way = kill_rounds(consumer, [n + 8000], N) + (n < N)
    check(mid_way >= 1, "at least one kill should land mid-way")
    consumer.start()
    wait_until(lambda: applied(consumer) >= N, 60, "the consumer to finish", interval=0.1)
    check_ticks(consumer, N)
    time.sleep(0.5)
    check_eq(applied(consumer), N, "ticks after settling")


@suite.test
def producer_killed_right_after_the_ack(w):
    consumer = w.host("consumer", w.scripts("consumer", {"consumer.lua": harness.consumer_lua()}))
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    wait_until(lambda: "producer" in consumer.status()["peers"], 10, "consumer to find producer")
    # The CLI's "sent producer/1" means the command is committed; the handler that publishes
    # the burst runs later, on the producer's loop. Kill before it can have finished.
    r = producer.send("producer", "Burst", {"n": 20000})
    producer.kill9()
    check_eq(r.out.strip(), "sent producer/1", "send's answer")
    check_eq(producer.query("select seq, type, kind, to_host from choreo_log where seq = 1"),
             [(1, "Burst", "command", "producer")], "the acknowledged command, after kill -9")
    ticks = producer.scalar("select count(*) from choreo_log where type = 'Tick'")
    print("    the producer had published %d ticks when killed" % ticks)
    check(ticks in (0, 20000), "the burst is one transaction: all or nothing, got %d" % ticks)
    producer.start()
    wait_until(lambda: applied(consumer) >= 20000, 30, "the consumer to get the burst", interval=0.1)
    check_ticks(consumer, 20000)
    check_eq(producer.query("select type, count(*) from choreo_log group by type order by type"),
             [("Burst", 1), ("Tick", 20000)], "the producer's log (the burst ran exactly once)")

    # Many acknowledged commands in a row, then kill -9: every one of them is in the log.
    for k in range(20):
        producer.send("producer", "Burst", {"from": 20001 + 10 * k, "n": 10})
    producer.kill9()
    check_eq(producer.scalar("select count(*) from choreo_log where type = 'Burst'"), 21,
             "acknowledged commands after kill -9")
    producer.start()
    wait_until(lambda: applied(consumer) >= 20200, 30, "the consumer to get the small bursts",
               interval=0.1)
    check_ticks(consumer, 20200)
    check_eq(producer.scalar("select count(*) from choreo_log where type = 'Tick'"), 20200,
             "ticks in the producer's log")


@suite.test
def producer_killed_while_the_consumer_fetches(w):
    N = 40000
    consumer = w.host("consumer", w.scripts("consumer", {
        "consumer.lua": harness.consumer_lua(work=5000)}))
    consumer.stop()
    producer = w.host("producer", w.scripts("producer", {"producer.lua": harness.PRODUCER_LUA}))
    producer.send("producer", "Burst", {"n": N})
    wait_until(lambda: producer.head() == N + 1, 60, "the producer to publish %d ticks" % N)
    consumer.start()
    for threshold in (5000, 15000):
        wait_until(lambda: applied(consumer) >= threshold, 30,
                   "the consumer to apply %d ticks" % threshold, interval=0.01)
        producer.kill9()
        n = no_duplicates(consumer)
        print("    killed the producer with %d of %d applied" % (n, N))
        # Without its source the consumer stalls, and stays alive and answering.
        time.sleep(0.3)
        stalled = applied(consumer)
        time.sleep(1.2)
        check(consumer.alive(), "the consumer survives its peer's death")
        check(consumer.status()["peers"]["producer"]["applied"] == stalled + 1,
              "status shows where the consumer stopped")
        check_eq(applied(consumer), stalled, "ticks applied while the producer was dead")
        producer.start()
    wait_until(lambda: applied(consumer) >= N, 60, "the consumer to finish", interval=0.1)
    check_ticks(consumer, N)


if __name__ == "__main__":
    suite.main()
