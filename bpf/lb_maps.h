/* Service load-balancing map layouts: the one definition shared by the BPF
 * programs (bpf/service_lb.bpf.c) and the C++ loader (proxy/). No mirror
 * structs anywhere: C++ includes this file, static_asserts the sizes, and a test
 * compares every offset with the BTF of the compiled object.
 *
 * Rules for this file: fixed-width fields, explicit padding, no bitfields,
 * addresses and ports in network byte order (as the kernel hands them to
 * sock_addr programs), a trailing comment on every field.
 *
 * Lookup is Cilium-style, in three levels:
 *   frontend (address, port, protocol, slot 0) -> service entry {count, id, flags}
 *   frontend (address, port, protocol, slot i) -> backend id, for i in 1..count
 *   backend id                                -> backend (address, port)
 *
 * IPv6 has its own frontend, backend and reverse-NAT maps (lb6_*: 16-byte
 * addresses) but the same service entry value (lb4_service), and shares the
 * round-robin counters and the affinity map: service ids and backend ids are
 * one space across both families, so a backend id names an entry in exactly
 * one of lb4_backends and lb6_backends.
 */
#ifndef FERRY_BPF_LB_MAPS_H
#define FERRY_BPF_LB_MAPS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Capacities. Hash maps are not preallocated, so memory follows use. */
#define LB_MAX_FRONTEND_ENTRIES (1u << 20) /* service entries + backend slots */
#define LB_MAX_BACKENDS (1u << 20)
#define LB_MAX_SERVICE_IDS (1u << 19) /* service ports (frontends) */
#define LB_MAX_AFFINITY_ENTRIES (1u << 16)
#define LB_MAX_REVERSE_NAT_ENTRIES (1u << 17)

/* lb4_service.flags */
#define LB_SERVICE_CLIENT_IP_AFFINITY 0x1 /* sessionAffinity: ClientIP */

struct lb4_key {
  __be32 address;     /* Service address (ClusterIP or node IP for NodePort) */
  __be16 port;        /* Service port or nodePort */
  __u16 backend_slot; /* 0: the service entry; 1..count: a backend slot */
  __u8 protocol;      /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad[3];        /* zero */
};

struct lb4_service {
  __u32 backend_id;           /* slots 1..count: the backend; 0 in the service entry */
  __u32 count;                /* service entry: backend slots in use; 0 refuses connects */
  __u32 service_id;           /* index into lb_rr_counters; part of the affinity key */
  __u32 affinity_timeout_sec; /* ClientIP affinity lifetime since last use */
  __u16 flags;                /* LB_SERVICE_* */
  __u16 pad;                  /* zero */
};

struct lb4_backend {
  __be32 address; /* endpoint address */
  __be16 port;    /* endpoint port (the resolved targetPort) */
  __u8 protocol;  /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;       /* zero */
};

struct lb_affinity_key {
  __u64 client_cookie; /* network namespace cookie: one pod (or the host) = one client */
  __u32 service_id;    /* lb4_service.service_id */
  __u32 pad;           /* zero */
};

struct lb_affinity_value {
  __u64 last_used_ns; /* bpf_ktime_get_ns() of the last connect that used it */
  __u32 backend_id;   /* the pinned backend */
  __u32 backend_slot; /* where it sat; a changed slot means the backend left */
};

struct lb4_reverse_nat_key {
  __u64 socket_cookie; /* bpf_get_socket_cookie() of the client socket */
  __be32 address;      /* backend address the socket was sent to */
  __be16 port;         /* backend port */
  __u16 pad;           /* zero */
};

struct lb4_reverse_nat_value {
  __be32 address; /* the Service address the application used */
  __be16 port;    /* the Service port the application used */
  __u16 pad;      /* zero */
};

/* A connected socket's Service, kept in the socket itself (lb4_socket_services):
 * the backend connect() was sent to and the Service address the application used. */
struct lb4_socket_service {
  __be32 backend_address;
  __be32 service_address;
  __be16 backend_port;
  __be16 service_port;
  __u32 pad; /* zero */
};

/* IPv6 twins. Addresses are four 32-bit words because the kernel's
 * bpf_sock_addr.user_ip6 may only be read and written a word at a time. */
struct lb6_key {
  __be32 address[4];  /* Service address (ClusterIP or node IP for NodePort) */
  __be16 port;        /* Service port or nodePort */
  __u16 backend_slot; /* 0: the service entry; 1..count: a backend slot */
  __u8 protocol;      /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad[3];        /* zero */
};

struct lb6_backend {
  __be32 address[4]; /* endpoint address */
  __be16 port;       /* endpoint port (the resolved targetPort) */
  __u8 protocol;     /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;          /* zero */
};

struct lb6_reverse_nat_key {
  __u64 socket_cookie; /* bpf_get_socket_cookie() of the client socket */
  __be32 address[4];   /* backend address the socket was sent to */
  __be16 port;         /* backend port */
  __u16 pad;           /* zero */
  __u32 pad2;          /* zero */
};

struct lb6_reverse_nat_value {
  __be32 address[4]; /* the Service address the application used */
  __be16 port;       /* the Service port the application used */
  __u16 pad;         /* zero */
};

struct lb6_socket_service {
  __be32 backend_address[4];
  __be32 service_address[4];
  __be16 backend_port;
  __be16 service_port;
  __u32 pad; /* zero */
};

/* Context of the BPF_PROG_TEST_RUN program lb4_select_test: the selection logic
 * of connect4 run on demand. In: address, port, protocol, client_cookie. Out:
 * result (0, or negative errno: -ENOENT not a Service, -ECONNREFUSED no
 * endpoints), backend_address, backend_port. */
struct lb4_select_args {
  __be32 address;         /* in: destination address */
  __be16 port;            /* in: destination port */
  __u8 protocol;          /* in: IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;               /* zero */
  __u64 client_cookie;    /* in: stands for the netns cookie */
  __s32 result;           /* out: 0 or negative errno */
  __be32 backend_address; /* out: chosen backend */
  __be16 backend_port;    /* out: chosen backend port */
  __u16 pad2;             /* zero */
  __u32 pad3;             /* zero */
};

/* Context of lb6_select_test: lb4_select_args for IPv6 frontends. */
struct lb6_select_args {
  __be32 address[4];         /* in: destination address */
  __be16 port;               /* in: destination port */
  __u8 protocol;             /* in: IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;                  /* zero */
  __u32 pad1;                /* zero */
  __u64 client_cookie;       /* in: stands for the netns cookie */
  __s32 result;              /* out: 0 or negative errno */
  __be16 backend_port;       /* out: chosen backend port */
  __u16 pad2;                /* zero */
  __be32 backend_address[4]; /* out: chosen backend */
};

#ifdef __bpf__
/* Map definitions (BPF side only; C++ opens them by name through the skeleton). */

/* (address, port, protocol, slot) -> service entry (slot 0) or backend id (slots 1..count) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_FRONTEND_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct lb4_key);
  __type(value, struct lb4_service);
} lb4_services SEC(".maps");

/* backend id -> backend (address, port, protocol) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_BACKENDS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u32);
  __type(value, struct lb4_backend);
} lb4_backends SEC(".maps");

/* service id -> round-robin counter, advanced atomically by every new connect */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, LB_MAX_SERVICE_IDS);
  __type(key, __u32);
  __type(value, __u32);
} lb_rr_counters SEC(".maps");

/* (client netns cookie, service id) -> pinned backend + last use, for ClientIP affinity */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, LB_MAX_AFFINITY_ENTRIES);
  __type(key, struct lb_affinity_key);
  __type(value, struct lb_affinity_value);
} lb_affinity SEC(".maps");

/* (socket cookie, backend address, port) -> Service address/port, for recvmsg4 and getpeername4 */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, LB_MAX_REVERSE_NAT_ENTRIES);
  __type(key, struct lb4_reverse_nat_key);
  __type(value, struct lb4_reverse_nat_value);
} lb4_reverse_nat SEC(".maps");

/* socket -> its Service, for getpeername4 and recvmsg4 on sockets that connect()ed
 * to a Service (TCP, connected UDP). Socket-local storage lives and dies with the
 * socket: no shared LRU to evict from on every connect (the LRU fills after ~130,000
 * connects and then evicts, at a cost per connect and possibly under a live socket).
 * The LRU above stays for unconnected UDP, where one socket sends to many Services. */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct lb4_socket_service);
} lb4_socket_services SEC(".maps");

/* IPv6 frontends: (address, port, protocol, slot) -> service entry or backend id */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_FRONTEND_ENTRIES);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct lb6_key);
  __type(value, struct lb4_service);
} lb6_services SEC(".maps");

/* backend id -> IPv6 backend (ids shared with lb4_backends: each id is in one of them) */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LB_MAX_BACKENDS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u32);
  __type(value, struct lb6_backend);
} lb6_backends SEC(".maps");

/* (socket cookie, IPv6 backend address, port) -> Service address/port, for recvmsg6 and getpeername6 */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, LB_MAX_REVERSE_NAT_ENTRIES);
  __type(key, struct lb6_reverse_nat_key);
  __type(value, struct lb6_reverse_nat_value);
} lb6_reverse_nat SEC(".maps");

/* socket -> its IPv6 Service, the twin of lb4_socket_services */
struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct lb6_socket_service);
} lb6_socket_services SEC(".maps");
#endif /* __bpf__ */

#endif /* FERRY_BPF_LB_MAPS_H */
