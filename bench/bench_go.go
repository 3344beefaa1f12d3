// bench_go: a Go program of the kind issue 18 measured: goroutines, channels, timers, the
// garbage collector and TCP over loopback, with a deterministic output (checksums only).
//
//	bench_go [-scale N]
//
// Four phases, each printing one line:
//   - a pipeline of 8 goroutines passing N*2000 integers through unbuffered channels;
//   - 64 goroutines each sleeping on timers (time.After, time.NewTicker) 20 times;
//   - N*200 rounds allocating short-lived maps and slices (garbage, forced GC each 50);
//   - a TCP echo server on 127.0.0.1 and 4 clients each sending N*100 messages.
//
// Built once by bench/bench_workloads.py into bench/out/cache (go build).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

func pipeline(n int) uint32 {
	const stages = 8
	first := make(chan int)
	in := first
	for s := 0; s < stages; s++ {
		out := make(chan int)
		go func(in <-chan int, out chan<- int, s int) {
			for v := range in {
				out <- v*3 + s
			}
			close(out)
		}(in, out, s)
		in = out
	}
	go func() {
		for i := 0; i < n; i++ {
			first <- i
		}
		close(first)
	}()
	var sum uint32
	for v := range in {
		sum = sum*31 + uint32(v)
	}
	return sum
}

func timers() int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ticks := 0
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			t := time.NewTicker(time.Duration(100+g) * time.Microsecond)
			defer t.Stop()
			for i := 0; i < 10; i++ {
				<-t.C
				<-time.After(50 * time.Microsecond)
				mu.Lock()
				ticks++
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	return ticks
}

func garbage(rounds int) uint32 {
	h := crc32.NewIEEE()
	for r := 0; r < rounds; r++ {
		m := make(map[int][]byte, 64)
		for i := 0; i < 256; i++ {
			m[i%64] = append(m[i%64], byte(i^r))
		}
		for i := 0; i < 64; i++ {
			h.Write(m[i])
		}
		if r%50 == 49 {
			runtime.GC()
		}
	}
	return h.Sum32()
}

func echo(clients, messages int) (uint32, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	sums := make([]uint32, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for k := 0; k < clients; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				errs[k] = err
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			h := crc32.NewIEEE()
			for i := 0; i < messages; i++ {
				fmt.Fprintf(c, "client %d message %d\n", k, i)
				line, err := r.ReadBytes('\n')
				if err != nil {
					errs[k] = err
					return
				}
				h.Write(line)
			}
			sums[k] = h.Sum32()
		}(k)
	}
	wg.Wait()
	var sum uint32
	for k := 0; k < clients; k++ {
		if errs[k] != nil {
			return 0, errs[k]
		}
		sum = sum*31 + sums[k]
	}
	return sum, nil
}

func main() {
	scale := flag.Int("scale", 5, "size of each phase")
	flag.Parse()
	fmt.Printf("pipeline %08x\n", pipeline(*scale*2000))
	fmt.Printf("timers %d\n", timers())
	fmt.Printf("garbage %08x\n", garbage(*scale*200))
	sum, err := echo(4, *scale*100)
	if err != nil {
		fmt.Println("echo failed:", err)
		os.Exit(1)
	}
	fmt.Printf("echo %08x\n", sum)
}
