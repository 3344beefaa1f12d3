// go_sites: a Go program whose own syscall sites relive patches (tests/test_go_sites.py):
// goroutines passing values through channels, timers, time.Now in a loop, a regular file
// written and read back (the runtime's Syscall6: buffered reads and writes), and a TCP echo
// over loopback. Prints checksums only, so a faithful replay prints the same lines.
//
//	go_sites FILE
package main

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"sync"
	"time"
)

//go:noinline
func stage(v, s int) int { return v*3 + s }

func pipeline(n int) uint32 {
	first := make(chan int)
	in := first
	for s := 0; s < 4; s++ {
		out := make(chan int)
		go func(in <-chan int, out chan<- int, s int) {
			for v := range in {
				out <- stage(v, s)
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
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				<-time.After(time.Millisecond)
				mu.Lock()
				ticks++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ticks
}

// clocks: time.Since 2000 times, a byte written to the file after every 100 (a call that
// is no clock read); then spin: 8000 in a row with no other call, as a loop waiting for
// another thread does (relive's trampolines stop buffering such a run after 2048).
func clocks(f *os.File) (int, int) {
	start := time.Now()
	n := 0
	for i := 0; i < 2000; i++ {
		if time.Since(start) >= 0 {
			n++
		}
		if i%100 == 99 {
			f.Write([]byte{'.'})
		}
	}
	spun := 0
	for i := 0; i < 8000; i++ {
		if time.Since(start) >= 0 {
			spun++
		}
	}
	return n, spun
}

func files(path string) uint32 {
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	for i := 0; i < 200; i++ {
		fmt.Fprintf(f, "line %d of the file\n", i)
	}
	f.Close()
	f, err = os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	h := crc32.NewIEEE()
	buf := make([]byte, 64)
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return h.Sum32()
}

func echo() uint32 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
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
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}(c)
		}
	}()
	var mu sync.Mutex
	var sum uint32
	var wg sync.WaitGroup
	for k := 0; k < 2; k++ {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				panic(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			for i := 0; i < 50; i++ {
				fmt.Fprintf(c, "client %d message %d\n", k, i)
				line, err := r.ReadString('\n')
				if err != nil {
					panic(err)
				}
				mu.Lock()
				sum += crc32.ChecksumIEEE([]byte(line))
				mu.Unlock()
			}
		}(k)
	}
	wg.Wait()
	ln.Close()
	return sum
}

func main() {
	fmt.Printf("pipeline %08x\n", pipeline(3000))
	fmt.Printf("timers %d\n", timers())
	f, err := os.Create(os.Args[1] + ".clocks")
	if err != nil {
		panic(err)
	}
	n, spun := clocks(f)
	f.Close()
	fmt.Printf("clocks %d %d\n", n, spun)
	fmt.Printf("file %08x\n", files(os.Args[1]))
	fmt.Printf("echo %08x\n", echo())
}
