"""multiprocessing with each start method named in argv: a Pool of 2 and a Process with a
Queue (sweep driver)."""
import multiprocessing as mp
import sys


def square(x):
    return x * x


if __name__ == "__main__":
    for method in sys.argv[1:]:
        ctx = mp.get_context(method)
        with ctx.Pool(2) as pool:
            print(method, sum(pool.map(square, range(2000), chunksize=50)))
        queue = ctx.Queue()
        proc = ctx.Process(target=queue.put, args=(method * 2,))
        proc.start()
        print(queue.get())
        proc.join()
