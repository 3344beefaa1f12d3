import java.util.concurrent.*;
import java.util.*;
public class Hello {
    public static void main(String[] a) throws Exception {
        ExecutorService ex = Executors.newFixedThreadPool(2);
        List<Future<Long>> fs = new ArrayList<>();
        for (int t = 0; t < 4; t++) { final int k = t; fs.add(ex.submit(() -> { long s = 0; for (long i = 0; i < 20_000_000L; i++) s += (i ^ k) % 7; return s; })); }
        long tot = 0; for (Future<Long> f : fs) tot += f.get();
        ex.shutdown();
        Map<String,Integer> m = new TreeMap<>(); for (int i = 0; i < 100000; i++) m.merge("k" + (i % 97), 1, Integer::sum);
        System.out.println(tot + " " + m.size());
    }
}
