// Built with g++ -fsanitize=thread by tests/test_sanitizers.py (not by the programs fixture):
// a thread spins on an atomic flag while the main thread sleeps, then sets it. The recorder
// preempts the spinner where its state repeats, which it finds by digesting the memory of a
// process whose ThreadSanitizer shadow reserves tens of terabytes.
#include <atomic>
#include <cstdio>
#include <thread>
#include <unistd.h>

static std::atomic<int> go;

int main()
{
    std::thread spinner([] {
        long spins = 0;
        while (!go.load(std::memory_order_acquire))
            spins++;
        std::printf("spinner saw the flag\n");
    });
    usleep(100000);
    go.store(1, std::memory_order_release);
    spinner.join();
    std::printf("done\n");
    return 0;
}
