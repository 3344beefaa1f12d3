// Built with g++ -fsanitize=thread by tests/test_sanitizers.py (not by the programs fixture):
// two threads bump a plain counter without a lock, so ThreadSanitizer reports a data race.
// The race report goes to stderr; the count (which the race may lose updates of) to stdout.
#include <cstdio>
#include <thread>

static long counter;

static void bump(int times)
{
    for (int i = 0; i < times; i++)
        counter++;  // the race
}

int main()
{
    std::thread a(bump, 100000), b(bump, 100000);
    a.join();
    b.join();
    std::printf("counter %ld\n", counter);
    return 0;
}
