#!/usr/bin/python3
"""The MQTT half of tools/bench/chat: the shape of `parley load chat` against
a Mosquitto broker. USERS clients (persistent sessions, clean_session off),
each subscribed at QoS 1 to its own topic chat/u/N; together they publish
RATE messages per second for DURATION seconds at QoS 1, each from a user to
another user chosen at random, TEXT_BYTES of payload carrying the send time
(CLOCK_MONOTONIC, one clock for every process). Measures send -> PUBACK
("sent") and send -> delivered latency, deliveries and repeats. Prints one
JSON object, always: a run that cannot finish (a client that never
connects, a broker that stops answering) prints what it has with an
"error" within DURATION + 60 s, and exits 1.

The clients are spread over WORKERS processes (env MQTT_WORKERS, default 2,
one per core here), each a single thread driving its paho clients from one
epoll loop (loop_read / loop_write / loop_misc): no GIL shared between
1,000 clients, and no select(). paho's own loop (loop_start) calls
select(), which cannot watch a descriptor above 1023: with a socket and a
socket pair per client, a process's 340th client was never read, and 661 of
1,000 clients never saw their CONNACK (their loop thread returned
"connection lost" silently, over and over).

usage: chat_mqtt_load.py HOST PORT USERS RATE DURATION TEXT_BYTES
(Debian's python3-paho-mqtt 1.6, hence /usr/bin/python3.)
"""
import json, multiprocessing as mp, os, resource, selectors, struct, sys, time, random
import paho.mqtt.client as mqtt

host, port, users, rate, duration, text_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
workers = max(1, min(users, int(os.environ.get("MQTT_WORKERS", "2"))))
# Phases, in a shared value: 0 connecting, 1 sending (from start_at), 2 stop and report.
CONNECTING, SENDING, STOP = 0, 1, 2


def worker(w, phase, start_at, ready, counts, results):
    """Clients w, w + workers, ...; sends its share of the rate from them; sends its figures on the pipe `results` at STOP
    (a pipe's send returns once written; a Queue's feeder thread would die unflushed in os._exit)."""
    mine = list(range(w, users, workers))
    sel = selectors.EpollSelector()
    delivery, sent_ack, seen = [], [], set()
    sent_at = {}  # (client, mid) -> send time, until its PUBACK
    c_sent = c_delivered = c_dups = 0
    subscribed = 0

    def on_message(client, userdata, msg):
        nonlocal c_delivered, c_dups
        now = time.monotonic_ns()
        t, mid = struct.unpack_from("!qq", msg.payload)
        if mid in seen:
            c_dups += 1
            return
        seen.add(mid)
        c_delivered += 1
        delivery.append(now - t)

    def on_subscribe(client, userdata, mid, granted):
        nonlocal subscribed
        subscribed += 1

    def make_on_publish(i):
        def on_publish(client, userdata, mid):
            t = sent_at.pop((i, mid), None)
            if t is not None:
                sent_ack.append(time.monotonic_ns() - t)
        return on_publish

    clients = {}
    for i in mine:
        c = mqtt.Client(client_id=f"bench-{i}", clean_session=False)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_message = on_message
        c.on_subscribe = on_subscribe
        c.on_publish = make_on_publish(i)
        c.on_connect = lambda c, u, f, rc, i=i: c.subscribe(f"chat/u/{i}", qos=1)
        c.connect(host, port, keepalive=60)
        clients[i] = c
        sel.register(c.socket(), selectors.EVENT_READ, c)
    writers = set(clients.values())  # clients with bytes paho could not write at once

    def pump(timeout):
        for key, _ in sel.select(timeout):
            c = key.data
            c.loop_read()
            if c.want_write():
                writers.add(c)
        for c in list(writers):
            c.loop_write()
            if not c.want_write():
                writers.discard(c)

    # Connect and subscribe every client, then say so.
    while subscribed < len(mine) and phase.value == CONNECTING:
        pump(0.01)
    with ready.get_lock():
        ready.value += 1
    last_misc = time.monotonic()
    pad = b"x" * max(0, text_bytes - 16)
    share = rate / workers
    n = 0
    rng = random.Random(w)
    while phase.value != STOP:
        now = time.monotonic()
        if phase.value == SENDING and now >= start_at.value:
            due = int(min(now - start_at.value, duration) * share)
            while n < due:
                i = mine[n % len(mine)]
                j = rng.randrange(users - 1)
                j = j if j < i else j + 1
                t = time.monotonic_ns()
                info = clients[i].publish(f"chat/u/{j}", struct.pack("!qq", t, n * workers + w) + pad, qos=1)
                sent_at[(i, info.mid)] = t
                if clients[i].want_write():
                    writers.add(clients[i])
                n += 1
                c_sent += 1
        pump(0.0005)
        counts[3 * w], counts[3 * w + 1], counts[3 * w + 2] = c_sent, c_delivered, len(sent_ack)
        if now - last_misc >= 1:
            last_misc = now
            for c in clients.values():
                c.loop_misc()
    results.send({"sent": c_sent, "delivered": c_delivered, "duplicates": c_dups, "sentAck": sent_ack, "delivery": delivery})
    os._exit(0)  # no teardown of paho's clients


def pct(xs, p):
    if not xs:
        return None
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6, 3)


def main():
    ctx = mp.get_context("fork")
    phase, start_at, ready = ctx.Value("i", CONNECTING), ctx.Value("d", 0.0), ctx.Value("i", 0)
    counts = ctx.Array("q", 3 * workers, lock=False)
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]
    procs = [ctx.Process(target=worker, args=(w, phase, start_at, ready, counts, pipes[w][1]), daemon=True) for w in range(workers)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + duration + 60
    error, send_seconds = None, 0.0
    connect_deadline = time.monotonic() + 30
    while ready.value < workers and time.monotonic() < connect_deadline and all(p.is_alive() for p in procs):
        time.sleep(0.01)
    if ready.value < workers:
        error = f"{workers - ready.value} of {workers} client processes not connected and subscribed after 30 s"
    else:
        time.sleep(0.5)  # let the SUBACKs land before the first message
        start_at.value = time.monotonic() + 0.05
        phase.value = SENDING
        time.sleep(duration + 0.05)
        send_seconds = duration
        # Drain: until every message sent is delivered and acknowledged, or 10 s.
        drain_end = time.monotonic() + 10
        while time.monotonic() < drain_end:
            s, d, a = (sum(counts[k::3]) for k in range(3))
            if d >= s and a >= s:
                break
            time.sleep(0.01)
    phase.value = STOP
    got = []
    for r, _ in pipes:
        try:
            if r.poll(max(1.0, deadline - time.monotonic())):
                got.append(r.recv())
                continue
        except (EOFError, OSError):
            pass
        error = error or "a client process reported nothing before the deadline"
    for p in procs:
        p.join(timeout=1)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent_ack = sorted(x for g in got for x in g["sentAck"])
    delivery = sorted(x for g in got for x in g["delivery"])
    out = {"sent": sum(g["sent"] for g in got), "acked": len(sent_ack), "delivered": sum(g["delivered"] for g in got),
           "duplicates": sum(g["duplicates"] for g in got), "sendSeconds": send_seconds, "workers": workers,
           "generatorCpuSeconds": round(children.ru_utime + children.ru_stime, 3),
           "sentAckMs": {"p50": pct(sent_ack, 0.5), "p99": pct(sent_ack, 0.99)},
           "deliveryMs": {"p50": pct(delivery, 0.5), "p99": pct(delivery, 0.99)}}
    if error:
        out["error"] = error
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(1 if error else 0)


main()
