//! The cgroup file parsers against real samples: v1 as read on a hybrid host
//! (Linux 6.18, memory cgroup of a busy system), v2 as Linux 6.x prints them
//! (formats of Documentation/admin-guide/cgroup-v2.rst, figures from a
//! container that ran `dd` and hit its memory limit).

use super::*;

/// 10 ms per USER_HZ tick (USER_HZ is 100 on every Linux ABI).
const TICK: u64 = 10_000_000;

const V1_MEMORY_STAT: &str = "\
cache 13357056
rss 6340608
rss_huge 0
shmem 10395648
mapped_file 8552448
dirty 94208
writeback 0
workingset_refault_anon 0
workingset_refault_file 2773
swap 0
swapcached 0
pgpgin 111314
pgpgout 106505
pgfault 112972
pgmajfault 0
inactive_anon 0
active_anon 0
inactive_file 12288
active_file 2949120
unevictable 16736256
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 18360709120
total_rss 1212121088
total_rss_huge 0
total_shmem 10395648
total_mapped_file 533499904
total_dirty 1333534720
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 9438480
total_swap 0
total_swapcached 0
total_pgpgin 300963047
total_pgpgout 297787539
total_pgfault 327200865
total_pgmajfault 66541
total_inactive_anon 1207472128
total_active_anon 81920
total_inactive_file 13144686592
total_active_file 5205622784
total_unevictable 16252928
";

const V1_OOM_CONTROL: &str = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
const V1_CPU_STAT: &str =
    "nr_periods 120\nnr_throttled 37\nthrottled_time 2012345678\nnr_bursts 0\nburst_time 0\n";
const V1_CPUACCT_STAT: &str = "user 805103\nsystem 214172\n";
const V1_BLKIO: &str = "\
8:0 Read 1048576
8:0 Write 4194304
8:0 Sync 5242880
8:0 Async 0
8:0 Discard 0
8:0 Total 5242880
253:0 Read 4096
253:0 Write 0
253:0 Sync 4096
253:0 Async 0
253:0 Discard 0
253:0 Total 4096
Total 5246976
";

const V2_CPU_STAT: &str = "\
usage_usec 2345678
user_usec 2000000
system_usec 345678
core_sched.force_idle_usec 0
nr_periods 500
nr_throttled 212
throttled_usec 10400000
nr_bursts 0
burst_usec 0
";

const V2_MEMORY_STAT: &str = "\
anon 31555584
file 1478656
kernel 552960
kernel_stack 32768
pagetables 114688
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 1290240
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 31531008
active_anon 24576
inactive_file 1388544
active_file 90112
unevictable 0
slab_reclaimable 84320
slab_unreclaimable 225048
slab 309368
workingset_refault_anon 0
workingset_refault_file 0
pgfault 8650
pgmajfault 0
";

const V2_MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 41\noom 1\noom_kill 1\noom_group_kill 0\n";
const V2_IO_STAT: &str = "\
254:0 rbytes=1310720 wbytes=33554432 rios=80 wios=256 dbytes=0 dios=0
8:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0
";

#[test]
fn v1_cpu() {
    let c = cpu_v1("10192756775122\n", V1_CPUACCT_STAT, V1_CPU_STAT, TICK);
    assert_eq!(c.usage_nanos, 10_192_756_775_122);
    assert_eq!(c.user_nanos, 8_051_030_000_000);
    assert_eq!(c.system_nanos, 2_141_720_000_000);
    assert_eq!(
        (c.periods, c.throttled_periods, c.throttled_nanos),
        (120, 37, 2_012_345_678)
    );
}

#[test]
fn v1_memory_uses_the_hierarchical_totals() {
    let m = memory_v1(
        "19538915328\n",
        "9223372036854771712\n",
        V1_MEMORY_STAT,
        V1_OOM_CONTROL,
    );
    assert_eq!(m.usage, 19_538_915_328);
    assert_eq!(m.limit, None, "the page-rounded i64::MAX is no limit");
    assert_eq!(m.cache, 18_360_709_120);
    assert_eq!(m.anon, 1_212_121_088);
    assert_eq!(m.inactive_file, 13_144_686_592);
    assert_eq!(m.working_set(), 19_538_915_328 - 13_144_686_592);
    assert_eq!(m.oom_kills, 2);
    let limited = memory_v1("100\n", "33554432\n", "cache 7\ninactive_file 500\n", "");
    assert_eq!(limited.limit, Some(33_554_432));
    assert_eq!(limited.cache, 7, "without total_ lines, the local ones");
    assert_eq!(limited.working_set(), 0, "never below zero");
    assert_eq!(limited.oom_kills, 0, "kernels before 4.13 have no oom_kill");
}

#[test]
fn v1_block_io_sums_devices() {
    assert_eq!(io_v1(V1_BLKIO), (1_052_672, 4_194_304));
    assert_eq!(io_v1("Total 0\n"), (0, 0));
}

#[test]
fn v2_cpu() {
    let c = cpu_v2(V2_CPU_STAT);
    assert_eq!(c.usage_nanos, 2_345_678_000);
    assert_eq!(c.user_nanos, 2_000_000_000);
    assert_eq!(c.system_nanos, 345_678_000);
    assert_eq!(
        (c.periods, c.throttled_periods, c.throttled_nanos),
        (500, 212, 10_400_000_000)
    );
    // Without the cpu controller enabled, cpu.stat has only the usage.
    let c = cpu_v2("usage_usec 5\nuser_usec 3\nsystem_usec 2\n");
    assert_eq!((c.usage_nanos, c.periods), (5000, 0));
}

#[test]
fn v2_memory() {
    let m = memory_v2("33685504\n", "33554432\n", V2_MEMORY_STAT, V2_MEMORY_EVENTS);
    assert_eq!(m.usage, 33_685_504);
    assert_eq!(m.limit, Some(33_554_432));
    assert_eq!(m.cache, 1_478_656);
    assert_eq!(m.anon, 31_555_584);
    assert_eq!(m.working_set(), 33_685_504 - 1_388_544);
    assert_eq!(m.oom_kills, 1);
    assert_eq!(memory_v2("0\n", "max\n", "", "").limit, None);
}

#[test]
fn v2_block_io_sums_devices() {
    assert_eq!(io_v2(V2_IO_STAT), (1_314_816, 33_554_432));
    assert_eq!(io_v2(""), (0, 0));
}

#[test]
fn limits_and_bad_input() {
    assert_eq!(limit("max\n"), None);
    assert_eq!(limit("512\n"), Some(512));
    assert_eq!(limit(""), None);
    assert_eq!(limit("garbage"), None);
    assert_eq!(keyed("a 1\nab 2\nb x\n", "ab"), Some(2));
    assert_eq!(keyed("a 1\nab 2\nb x\n", "b"), None);
    assert_eq!(io_v1("8:0 Read notanumber\nshort\n"), (0, 0));
}

#[test]
fn host_cpu_and_percent() {
    let stat = "cpu  756264 41832 211339 6070369 10166 0 969 1255 0 0\n\
                cpu0 378132 20916 105669 3035184 5083 0 484 627 0 0\nbtime 1796425680\n";
    let total = 756_264 + 41_832 + 211_339 + 6_070_369 + 10_166 + 969 + 1_255;
    assert_eq!(host_cpu_nanos(stat, TICK), total * TICK);
    assert_eq!(host_cpu_nanos("nothing", TICK), 0);
    assert_eq!(online_cpus(stat), 1);
    assert_eq!(online_cpus("cpu  1 2\ncpu0 1\ncpu1 1\ncpu3 1\nctxt 5\n"), 3);
    assert_eq!(online_cpus(""), 1);
    // One CPU busy out of two for the whole interval: 100 %.
    let p = cpu_percent(0, 1_000_000_000, 0, 2_000_000_000, 2);
    assert!((p - 100.0).abs() < 1e-9, "{p}");
    assert_eq!(cpu_percent(5, 5, 7, 7, 2), 0.0);
    assert_eq!(
        cpu_percent(9, 5, 0, 10, 2),
        0.0,
        "a reset counter is no usage"
    );
}

#[test]
fn procs_walks_the_cgroups_below() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("cgroup.procs"), "12\n7\n").unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    std::fs::write(d.path().join("sub/cgroup.procs"), "30\n7\n").unwrap();
    assert_eq!(procs(d.path(), 100), vec![7, 12, 30]);
    assert!(procs(&d.path().join("gone"), 100).is_empty());
}
