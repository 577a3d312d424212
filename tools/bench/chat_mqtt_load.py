#!/usr/bin/python3
"""The MQTT half of tools/bench/chat: the shape of `parley load chat` against
a Mosquitto broker. USERS clients (persistent sessions, clean_session off),
each subscribed at QoS 1 to its own topic chat/u/N; together they publish
RATE messages per second for DURATION seconds at QoS 1, each from a user to
another user chosen at random, TEXT_BYTES of payload carrying the send time.
Measures send -> PUBACK ("sent") and send -> delivered latency, deliveries
and repeats. Prints one JSON object, always: a run that cannot finish (a
client that never connects, a broker that stops answering) prints what it
has with an "error" within DURATION + 60 s, and exits 1.

No lock of ours is held while calling into paho (publish), and none of
paho's is needed by our callbacks beyond appending to a list: paho calls
on_publish holding its own out-message lock, so a lock held across
publish() by us and taken in on_publish deadlocks (the run hung forever
that way).

usage: chat_mqtt_load.py HOST PORT USERS RATE DURATION TEXT_BYTES
(Debian's python3-paho-mqtt 1.6, hence /usr/bin/python3.)
"""
import collections, json, os, random, struct, sys, threading, time
import paho.mqtt.client as mqtt

host, port, users, rate, duration, text_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
lock = threading.Lock()  # guards what on_message touches; never held across a paho call
delivery, seen = [], set()
stats = {"sent": 0, "delivered": 0, "duplicates": 0}
# (client index, mid, time) of each publish and of each PUBACK, appended
# without a lock (list.append is atomic); matched per (client, mid) in order
# at the end, so a PUBACK seen before publish() returned still counts.
sends, pubacks = [], []
phase = {"name": "connecting", "sendSeconds": 0.0}
reported = threading.Lock()

def on_message(client, userdata, msg):
    now = time.monotonic_ns()
    t, mid = struct.unpack_from("!qq", msg.payload)
    with lock:
        if mid in seen:
            stats["duplicates"] += 1
            return
        seen.add(mid)
        stats["delivered"] += 1
        delivery.append(now - t)

def make_on_publish(i):
    return lambda client, userdata, mid: pubacks.append((i, mid, time.monotonic_ns()))

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6, 3)

def report(error=None):
    """Prints the result so far (once) and leaves at once: no teardown of paho's threads can hold the exit."""
    if not reported.acquire(blocking=False):
        threading.Event().wait()  # the other caller prints and exits
    waiting = collections.defaultdict(collections.deque)
    for i, mid, t in list(sends):
        waiting[(i, mid)].append(t)
    sent_ack = []
    for i, mid, t in list(pubacks):
        q = waiting.get((i, mid))
        if q:
            sent_ack.append(t - q.popleft())
    with lock:
        out = {"sent": stats["sent"], "acked": len(sent_ack), "delivered": stats["delivered"],
               "duplicates": stats["duplicates"], "sendSeconds": phase["sendSeconds"],
               "sentAckMs": {"p50": pct(sent_ack, 0.5), "p99": pct(sent_ack, 0.99)},
               "deliveryMs": {"p50": pct(delivery, 0.5), "p99": pct(delivery, 0.99)}}
    if error:
        out["error"] = error
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    os._exit(1 if error else 0)

# The whole run's deadline: connecting, sending, draining and a margin.
watchdog = threading.Timer(duration + 60, lambda: report(f"deadline passed while {phase['name']}"))
watchdog.daemon = True
watchdog.start()

clients, connected = [], threading.Semaphore(0)
try:
    for i in range(users):
        c = mqtt.Client(client_id=f"bench-{i}", clean_session=False)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_message = on_message
        c.on_publish = make_on_publish(i)
        c.on_connect = lambda c, u, f, rc, i=i: (c.subscribe(f"chat/u/{i}", qos=1), connected.release())
        c.connect(host, port, keepalive=60)
        c.loop_start()
        clients.append(c)
except OSError as e:
    report(f"connect: {e}")
connect_deadline = time.monotonic() + 30
for n in range(users):
    if not connected.acquire(timeout=max(0.0, connect_deadline - time.monotonic())):
        report(f"{users - n} of {users} clients not connected after 30 s")
time.sleep(0.5)  # let the SUBACKs land before the first message

phase["name"] = "sending"
pad = b"x" * max(0, text_bytes - 16)
start = time.monotonic()
n = 0
while True:
    elapsed = time.monotonic() - start
    if elapsed >= duration:
        break
    due = int(elapsed * rate)
    while n < due:
        i = n % users
        j = random.randrange(users - 1)
        j = j if j < i else j + 1
        t = time.monotonic_ns()
        info = clients[i].publish(f"chat/u/{j}", struct.pack("!qq", t, n) + pad, qos=1)
        sends.append((i, info.mid, t))
        stats["sent"] += 1  # only this thread writes it
        n += 1
    time.sleep(0.0005)
phase["sendSeconds"] = time.monotonic() - start
phase["name"] = "draining"
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    with lock:
        done = stats["delivered"] >= stats["sent"]
    if done and len(pubacks) >= stats["sent"]:
        break
    time.sleep(0.01)
report()
