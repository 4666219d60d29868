// A tiny socket filter for the eBPF collector's real tests: it counts packets in an
// array map (so every load has a map whose id differs, which the collector's hash
// must not see) and accepts VARIANT bytes of each packet (so a "modified program"
// is one -DVARIANT away). Only linux/bpf.h from linux-libc-dev is needed.
//
// clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c socket_filter.c -o prog.o
#include <linux/bpf.h>

#ifndef VARIANT
#define VARIANT 0
#endif
// The program's name as the kernel reports it (at most 15 characters).
#ifndef PROG_NAME
#define PROG_NAME provenant_test
#endif

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} provenant_cnt SEC(".maps");

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;

SEC("socket")
int PROG_NAME(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&provenant_cnt, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	return VARIANT;
}

char _license[] SEC("license") = "Dual MIT/GPL";
