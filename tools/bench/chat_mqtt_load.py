#!/usr/bin/python3
"""The MQTT half of tools/bench/chat: the shape of `parley load chat` against
a Mosquitto broker. USERS clients (persistent sessions, clean_session off),
each subscribed at QoS 1 to its own topic chat/u/N; together they publish
RATE messages per second for DURATION seconds at QoS 1, each from a user to
another user chosen at random, TEXT_BYTES of payload carrying the send time.
Measures send -> PUBACK ("sent") and send -> delivered latency, deliveries
and repeats. Prints one JSON object.

usage: chat_mqtt_load.py HOST PORT USERS RATE DURATION TEXT_BYTES
(Debian's python3-paho-mqtt 1.6, hence /usr/bin/python3.)
"""
import json, random, struct, sys, threading, time
import paho.mqtt.client as mqtt

host, port, users, rate, duration, text_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
lock = threading.Lock()
delivery, sent_ack, seen = [], [], set()
stats = {"sent": 0, "acked": 0, "delivered": 0, "duplicates": 0}
pending = {}  # (client index, mid) -> send time

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
    def on_publish(client, userdata, mid):
        now = time.monotonic_ns()
        with lock:
            t = pending.pop((i, mid), None)
            if t is not None:
                stats["acked"] += 1
                sent_ack.append(now - t)
    return on_publish

clients, connected = [], threading.Semaphore(0)
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
for _ in range(users):
    connected.acquire()
time.sleep(0.5)  # let the SUBACKs land before the first message

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
        payload = struct.pack("!qq", time.monotonic_ns(), n) + pad
        with lock:
            info = clients[i].publish(f"chat/u/{j}", payload, qos=1)
            pending[(i, info.mid)] = struct.unpack_from("!q", payload)[0]
            stats["sent"] += 1
        n += 1
    time.sleep(0.0005)
send_seconds = time.monotonic() - start
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    with lock:
        if stats["delivered"] >= stats["sent"] and stats["acked"] >= stats["sent"]:
            break
    time.sleep(0.01)
for c in clients:
    c.loop_stop()
    c.disconnect()

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] / 1e6, 3)

print(json.dumps({"sent": stats["sent"], "acked": stats["acked"], "delivered": stats["delivered"],
                  "duplicates": stats["duplicates"], "sendSeconds": send_seconds,
                  "sentAckMs": {"p50": pct(sent_ack, 0.5), "p99": pct(sent_ack, 0.99)},
                  "deliveryMs": {"p50": pct(delivery, 0.5), "p99": pct(delivery, 0.99)}}))
