#!/usr/bin/env bash
# fork-stress on the fixed kernel for 5 minutes: five seeds of 60 s each, with eviction, the sweep and
# the checker after every address-space call. Prints one line per seed (the README's figures): forks,
# pages verified, COW faults, evictions, exec'd children and the shared region's alias fills.
cd "$(dirname "$0")/.." || exit 2
for seed in 1 2 3 4 5; do
  node bin/splitkern.mjs run fork-stress --seconds 60 --procs 6 --pcache 512K --ways 4 --sweep --check syscall \
    --seed "$seed" --json 2>/dev/null |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=j.verification;
      console.log(`seed ${j.seed}: exit ${j.exitCode}, ok ${v.ok}, forks ${v.forks}, reaped ${v.reaped}, failed ${v.childFailures}, pages verified ${v.pagesVerified}, bad ${v.mismatches}, violations ${j.violationCount}, wp_cow ${j.stats.pcache.nr_pgfault_wp_cow}, wp_reuse ${j.stats.pcache.nr_pgfault_wp_reuse}, evictions ${j.stats.pcache.nr_pcache_eviction_succeed}, execs ${v.execs}, shared: alias fills ${j.stats.shared.aliasFills}, evicted ${j.stats.shared.evictions}, written back at unmap ${j.stats.shared.zapFlushes}, wall ${(j.wallMs/1000).toFixed(1)} s`)})'
done
