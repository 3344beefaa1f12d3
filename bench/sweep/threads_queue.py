"""A producer/consumer pipeline of threads (sweep driver, issue 18.2): 2 producers put 20,000
items each into a bounded queue.Queue, 2 consumers take them (blocking get with a timeout,
as CPython's threads wait: a condition variable over its lock), a result queue collects the
sums; prints the total, deterministic."""
import queue
import threading

ITEMS, PRODUCERS, CONSUMERS = 20_000, 2, 2
work: queue.Queue[int | None] = queue.Queue(maxsize=8)
results: queue.Queue[int] = queue.Queue()


def produce(k: int) -> None:
    for i in range(ITEMS):
        work.put(k * ITEMS + i)


def consume() -> None:
    total = 0
    while (item := work.get(timeout=30)) is not None:
        total += item * item % 7919
    results.put(total)


producers = [threading.Thread(target=produce, args=(k,)) for k in range(PRODUCERS)]
consumers = [threading.Thread(target=consume) for _ in range(CONSUMERS)]
for t in producers + consumers:
    t.start()
for t in producers:
    t.join()
for _ in consumers:
    work.put(None)
for t in consumers:
    t.join()
print("items", PRODUCERS * ITEMS, "sum", sum(results.get() for _ in consumers))
