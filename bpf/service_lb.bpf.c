// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Socket-level Service load balancing: the destination of connect() and of
 * sendmsg() on UDP is rewritten from a Service frontend to one backend, once,
 * in the client's cgroup hook; no packet is translated afterwards. recvmsg and
 * getpeername translate the backend back to the Service address so the
 * application only ever sees the address it used.
 *
 * The decision logic lives in static __always_inline helpers returning 0 or a
 * negative errno; the SEC() wrappers turn that into a verdict. lb4_select_test
 * and lb6_select_test run the same selection under BPF_PROG_TEST_RUN.
 *
 * Refusal: a Service with no usable endpoint must fail connect() at once with
 * ECONNREFUSED (what a client gets from kube-proxy's reject rule). Returning 0
 * from a sock_addr program alone gives EPERM; bpf_set_retval(-ECONNREFUSED)
 * before returning 0 (kernel >= 5.18) makes the syscall return ECONNREFUSED
 * instead, with no packet sent and no port to keep closed.
 */
#include "vmlinux.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "lb_maps.h"

#define ENOENT 2
#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ull

/* The selection, shared by both families. `services` and `backends` are the
 * family's frontend and backend maps, `key` its frontend key (slot 0 on entry)
 * and `slot` that key's backend_slot field. Returns 0 with *chosen pointing at
 * the backend's map value, -ENOENT when the key is not a Service frontend,
 * -ECONNREFUSED when the Service has no usable backend. Always inlined, so each
 * caller's map pointers are constants to the verifier. */
static __always_inline int lb_select(void *services, void *backends, void *key, __u16 *slot_field,
                                     __u64 client_cookie, void **chosen) {
  *slot_field = 0;
  struct lb4_service *service = bpf_map_lookup_elem(services, key);
  if (!service) return -ENOENT;
  __u32 count = service->count;
  if (count == 0) return -ECONNREFUSED;
  __u32 service_id = service->service_id;
  int affinity = service->flags & LB_SERVICE_CLIENT_IP_AFFINITY;
  __u64 timeout_ns = (__u64)service->affinity_timeout_sec * NSEC_PER_SEC;

  struct lb_affinity_key affinity_key = {};
  __u64 now = 0;
  struct lb4_service *slot;
  void *backend;

  if (affinity) {
    affinity_key.client_cookie = client_cookie;
    affinity_key.service_id = service_id;
    now = bpf_ktime_get_ns();
    struct lb_affinity_value *pinned = bpf_map_lookup_elem(&lb_affinity, &affinity_key);
    /* Honour the pin only while it is fresh and its backend still sits in the
     * slot it was chosen from (else the endpoint has left the Service). */
    if (pinned && now - pinned->last_used_ns <= timeout_ns && pinned->backend_slot >= 1 &&
        pinned->backend_slot <= count) {
      *slot_field = (__u16)pinned->backend_slot;
      slot = bpf_map_lookup_elem(services, key);
      if (slot && slot->backend_id == pinned->backend_id) {
        __u32 backend_id = slot->backend_id;
        backend = bpf_map_lookup_elem(backends, &backend_id);
        if (backend) {
          pinned->last_used_ns = now;
          *chosen = backend;
          return 0;
        }
      }
    }
  }

  __u32 *counter = bpf_map_lookup_elem(&lb_rr_counters, &service_id);
  if (!counter) return -ECONNREFUSED;
  /* One atomic ticket per connect: exact round-robin across CPUs. */
  __u32 ticket = __sync_fetch_and_add(counter, 1);
  __u32 slot_index = ticket % count + 1;
  *slot_field = (__u16)slot_index;
  slot = bpf_map_lookup_elem(services, key);
  __u32 backend_id = slot ? slot->backend_id : 0;
  backend = slot ? bpf_map_lookup_elem(backends, &backend_id) : 0;
  if (!backend) {
    /* A shrink raced with us (count read before the tail slot or its backend
     * went away): slot 1 is the last to go, so it is valid while count > 0. */
    slot_index = 1;
    *slot_field = 1;
    slot = bpf_map_lookup_elem(services, key);
    if (!slot) return -ECONNREFUSED;
    backend_id = slot->backend_id;
    backend = bpf_map_lookup_elem(backends, &backend_id);
    if (!backend) return -ECONNREFUSED;
  }

  if (affinity) {
    struct lb_affinity_value fresh = {};
    fresh.last_used_ns = now;
    fresh.backend_id = backend_id;
    fresh.backend_slot = slot_index;
    bpf_map_update_elem(&lb_affinity, &affinity_key, &fresh, BPF_ANY);
  }
  *chosen = backend;
  return 0;
}

/* Picks a backend for an IPv4 (address, port, protocol) seen from client_cookie. */
static __always_inline int lb4_select(__be32 address, __be16 port, __u8 protocol, __u64 client_cookie,
                                      struct lb4_backend *out) {
  struct lb4_key key = {};
  key.address = address;
  key.port = port;
  key.protocol = protocol;
  void *backend = 0;
  int err = lb_select(&lb4_services, &lb4_backends, &key, &key.backend_slot, client_cookie, &backend);
  if (err) return err;
  *out = *(struct lb4_backend *)backend;
  return 0;
}

/* The same for an IPv6 frontend. */
static __always_inline int lb6_select(const __be32 address[4], __be16 port, __u8 protocol, __u64 client_cookie,
                                      struct lb6_backend *out) {
  struct lb6_key key = {};
  key.address[0] = address[0];
  key.address[1] = address[1];
  key.address[2] = address[2];
  key.address[3] = address[3];
  key.port = port;
  key.protocol = protocol;
  void *backend = 0;
  int err = lb_select(&lb6_services, &lb6_backends, &key, &key.backend_slot, client_cookie, &backend);
  if (err) return err;
  *out = *(struct lb6_backend *)backend;
  return 0;
}

/* Remembers, per socket and backend, which Service address the application used. */
static __always_inline void lb4_remember_service(__u64 socket_cookie, const struct lb4_backend *backend,
                                                 __be32 service_address, __be16 service_port) {
  struct lb4_reverse_nat_key key = {};
  key.socket_cookie = socket_cookie;
  key.address = backend->address;
  key.port = backend->port;
  struct lb4_reverse_nat_value value = {};
  value.address = service_address;
  value.port = service_port;
  bpf_map_update_elem(&lb4_reverse_nat, &key, &value, BPF_ANY);
}

static __always_inline struct lb4_reverse_nat_value *lb4_service_of(__u64 socket_cookie, __be32 address,
                                                                    __be16 port) {
  struct lb4_reverse_nat_key key = {};
  key.socket_cookie = socket_cookie;
  key.address = address;
  key.port = port;
  return bpf_map_lookup_elem(&lb4_reverse_nat, &key);
}

/* connect(): the Service goes into the socket's own storage; if that cannot be
 * had (no memory), into the shared LRU as for sendmsg. */
static __always_inline void lb4_remember_connected(struct bpf_sock_addr *ctx, const struct lb4_backend *backend,
                                                   __be32 service_address, __be16 service_port) {
  struct bpf_sock *sk = ctx->sk;
  struct lb4_socket_service *stored =
      sk ? bpf_sk_storage_get(&lb4_socket_services, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : 0;
  if (!stored) {
    lb4_remember_service(bpf_get_socket_cookie(ctx), backend, service_address, service_port);
    return;
  }
  stored->backend_address = backend->address;
  stored->backend_port = backend->port;
  stored->service_address = service_address;
  stored->service_port = service_port;
}

/* The Service address a socket's peer (address, port) stands for, if the
 * socket connect()ed to a Service: 1 with *service_address/port set, else 0. */
static __always_inline int lb4_connected_service(struct bpf_sock_addr *ctx, __be32 address, __be16 port,
                                                 __be32 *service_address, __be16 *service_port) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct lb4_socket_service *stored = bpf_sk_storage_get(&lb4_socket_services, sk, 0, 0);
  if (!stored || stored->backend_address != address || stored->backend_port != port) return 0;
  *service_address = stored->service_address;
  *service_port = stored->service_port;
  return 1;
}

/* recvmsg/getpeername: a connected socket's storage first, then the LRU. */
static __always_inline int lb4_restore_service(struct bpf_sock_addr *ctx, __be32 address, __be16 port,
                                               __be32 *service_address, __be16 *service_port) {
  if (lb4_connected_service(ctx, address, port, service_address, service_port)) return 1;
  struct lb4_reverse_nat_value *service = lb4_service_of(bpf_get_socket_cookie(ctx), address, port);
  if (!service) return 0;
  *service_address = service->address;
  *service_port = service->port;
  return 1;
}

static __always_inline int is_lb_protocol(__u32 protocol) {
  return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP;
}

/* sock_addr verdicts: 1 lets the call proceed (with the rewritten address), 0
 * fails it with the errno set by bpf_set_retval. */
static __always_inline int refuse(void) {
  bpf_set_retval(-ECONNREFUSED);
  return 0;
}

static __always_inline int lb4_translate(struct bpf_sock_addr *ctx, int connecting) {
  __u32 protocol = ctx->protocol;
  if (!is_lb_protocol(protocol)) return 1;
  __be32 address = ctx->user_ip4;
  __be16 port = (__be16)ctx->user_port;
  struct lb4_backend backend = {};
  int err = lb4_select(address, port, (__u8)protocol, bpf_get_netns_cookie(ctx), &backend);
  if (err == -ENOENT) return 1;
  if (err) return refuse();
  ctx->user_ip4 = backend.address;
  ctx->user_port = backend.port;
  if (connecting)
    lb4_remember_connected(ctx, &backend, address, port);
  else
    lb4_remember_service(bpf_get_socket_cookie(ctx), &backend, address, port);
  return 1;
}

static __always_inline int lb4_restore(struct bpf_sock_addr *ctx) {
  __be32 service_address;
  __be16 service_port;
  if (lb4_restore_service(ctx, ctx->user_ip4, (__be16)ctx->user_port, &service_address, &service_port)) {
    ctx->user_ip4 = service_address;
    ctx->user_port = service_port;
  }
  return 1;
}

SEC("cgroup/connect4")
int ferry_connect4(struct bpf_sock_addr *ctx) { return lb4_translate(ctx, 1); }

SEC("cgroup/sendmsg4")
int ferry_sendmsg4(struct bpf_sock_addr *ctx) { return lb4_translate(ctx, 0); }

SEC("cgroup/recvmsg4")
int ferry_recvmsg4(struct bpf_sock_addr *ctx) { return lb4_restore(ctx); }

SEC("cgroup/getpeername4")
int ferry_getpeername4(struct bpf_sock_addr *ctx) { return lb4_restore(ctx); }

/* IPv6 sockets: an IPv6 destination is looked up in the lb6 maps; a
 * v4-mapped one (::ffff:a.b.c.d, what a dual-stack socket uses for an IPv4
 * Service) in the IPv4 maps, rewriting only the last word. user_ip6 is read
 * and written one 32-bit word at a time: the verifier refuses other widths. */
static __always_inline int is_v4_mapped(const __be32 address[4]) {
  return address[0] == 0 && address[1] == 0 && address[2] == bpf_htonl(0xffff);
}

static __always_inline void lb6_remember_service(__u64 socket_cookie, const struct lb6_backend *backend,
                                                 const __be32 service_address[4], __be16 service_port) {
  struct lb6_reverse_nat_key key = {};
  key.socket_cookie = socket_cookie;
  key.address[0] = backend->address[0];
  key.address[1] = backend->address[1];
  key.address[2] = backend->address[2];
  key.address[3] = backend->address[3];
  key.port = backend->port;
  struct lb6_reverse_nat_value value = {};
  value.address[0] = service_address[0];
  value.address[1] = service_address[1];
  value.address[2] = service_address[2];
  value.address[3] = service_address[3];
  value.port = service_port;
  bpf_map_update_elem(&lb6_reverse_nat, &key, &value, BPF_ANY);
}

/* connect() to an IPv6 Service: into the socket's storage, else the LRU. */
static __always_inline void lb6_remember_connected(struct bpf_sock_addr *ctx, const struct lb6_backend *backend,
                                                   const __be32 service_address[4], __be16 service_port) {
  struct bpf_sock *sk = ctx->sk;
  struct lb6_socket_service *stored =
      sk ? bpf_sk_storage_get(&lb6_socket_services, sk, 0, BPF_SK_STORAGE_GET_F_CREATE) : 0;
  if (!stored) {
    lb6_remember_service(bpf_get_socket_cookie(ctx), backend, service_address, service_port);
    return;
  }
  stored->backend_address[0] = backend->address[0];
  stored->backend_address[1] = backend->address[1];
  stored->backend_address[2] = backend->address[2];
  stored->backend_address[3] = backend->address[3];
  stored->backend_port = backend->port;
  stored->service_address[0] = service_address[0];
  stored->service_address[1] = service_address[1];
  stored->service_address[2] = service_address[2];
  stored->service_address[3] = service_address[3];
  stored->service_port = service_port;
}

/* The IPv6 twin of lb4_connected_service: 1 with *service set when the socket
 * connect()ed to an IPv6 Service whose backend is (address, port). */
static __always_inline int lb6_connected_service(struct bpf_sock_addr *ctx, const __be32 address[4], __be16 port,
                                                 struct lb6_socket_service **service) {
  struct bpf_sock *sk = ctx->sk;
  if (!sk) return 0;
  struct lb6_socket_service *stored = bpf_sk_storage_get(&lb6_socket_services, sk, 0, 0);
  if (!stored || stored->backend_port != port || stored->backend_address[0] != address[0] ||
      stored->backend_address[1] != address[1] || stored->backend_address[2] != address[2] ||
      stored->backend_address[3] != address[3])
    return 0;
  *service = stored;
  return 1;
}

static __always_inline int lb6_translate(struct bpf_sock_addr *ctx, int connecting) {
  __u32 protocol = ctx->protocol;
  if (!is_lb_protocol(protocol)) return 1;
  __be32 address[4];
  address[0] = ctx->user_ip6[0];
  address[1] = ctx->user_ip6[1];
  address[2] = ctx->user_ip6[2];
  address[3] = ctx->user_ip6[3];
  __be16 port = (__be16)ctx->user_port;
  if (is_v4_mapped(address)) {
    struct lb4_backend backend = {};
    int err = lb4_select(address[3], port, (__u8)protocol, bpf_get_netns_cookie(ctx), &backend);
    if (err == -ENOENT) return 1;
    if (err) return refuse();
    ctx->user_ip6[3] = backend.address;
    ctx->user_port = backend.port;
    if (connecting)
      lb4_remember_connected(ctx, &backend, address[3], port);
    else
      lb4_remember_service(bpf_get_socket_cookie(ctx), &backend, address[3], port);
    return 1;
  }
  struct lb6_backend backend = {};
  int err = lb6_select(address, port, (__u8)protocol, bpf_get_netns_cookie(ctx), &backend);
  if (err == -ENOENT) return 1;
  if (err) return refuse();
  ctx->user_ip6[0] = backend.address[0];
  ctx->user_ip6[1] = backend.address[1];
  ctx->user_ip6[2] = backend.address[2];
  ctx->user_ip6[3] = backend.address[3];
  ctx->user_port = backend.port;
  if (connecting)
    lb6_remember_connected(ctx, &backend, address, port);
  else
    lb6_remember_service(bpf_get_socket_cookie(ctx), &backend, address, port);
  return 1;
}

static __always_inline int lb6_restore(struct bpf_sock_addr *ctx) {
  __be32 address[4];
  address[0] = ctx->user_ip6[0];
  address[1] = ctx->user_ip6[1];
  address[2] = ctx->user_ip6[2];
  address[3] = ctx->user_ip6[3];
  __be16 port = (__be16)ctx->user_port;
  if (is_v4_mapped(address)) {
    __be32 service_address;
    __be16 service_port;
    if (lb4_restore_service(ctx, address[3], port, &service_address, &service_port)) {
      ctx->user_ip6[3] = service_address;
      ctx->user_port = service_port;
    }
    return 1;
  }
  struct lb6_socket_service *stored = 0;
  if (lb6_connected_service(ctx, address, port, &stored)) {
    ctx->user_ip6[0] = stored->service_address[0];
    ctx->user_ip6[1] = stored->service_address[1];
    ctx->user_ip6[2] = stored->service_address[2];
    ctx->user_ip6[3] = stored->service_address[3];
    ctx->user_port = stored->service_port;
    return 1;
  }
  __u64 cookie = bpf_get_socket_cookie(ctx);
  struct lb6_reverse_nat_key key = {};
  key.socket_cookie = cookie;
  key.address[0] = address[0];
  key.address[1] = address[1];
  key.address[2] = address[2];
  key.address[3] = address[3];
  key.port = port;
  struct lb6_reverse_nat_value *service = bpf_map_lookup_elem(&lb6_reverse_nat, &key);
  if (service) {
    ctx->user_ip6[0] = service->address[0];
    ctx->user_ip6[1] = service->address[1];
    ctx->user_ip6[2] = service->address[2];
    ctx->user_ip6[3] = service->address[3];
    ctx->user_port = service->port;
  }
  return 1;
}

SEC("cgroup/connect6")
int ferry_connect6(struct bpf_sock_addr *ctx) { return lb6_translate(ctx, 1); }

SEC("cgroup/sendmsg6")
int ferry_sendmsg6(struct bpf_sock_addr *ctx) { return lb6_translate(ctx, 0); }

SEC("cgroup/recvmsg6")
int ferry_recvmsg6(struct bpf_sock_addr *ctx) { return lb6_restore(ctx); }

SEC("cgroup/getpeername6")
int ferry_getpeername6(struct bpf_sock_addr *ctx) { return lb6_restore(ctx); }

/* The selection logic on demand, for tests (BPF_PROG_TEST_RUN with ctx_in). */
SEC("syscall")
int lb4_select_test(struct lb4_select_args *args) {
  struct lb4_backend backend = {};
  int err = lb4_select(args->address, args->port, args->protocol, args->client_cookie, &backend);
  args->result = err;
  args->backend_address = backend.address;
  args->backend_port = backend.port;
  return 0;
}

SEC("syscall")
int lb6_select_test(struct lb6_select_args *args) {
  struct lb6_backend backend = {};
  __be32 address[4];
  address[0] = args->address[0];
  address[1] = args->address[1];
  address[2] = args->address[2];
  address[3] = args->address[3];
  int err = lb6_select(address, args->port, args->protocol, args->client_cookie, &backend);
  args->result = err;
  args->backend_port = backend.port;
  args->backend_address[0] = backend.address[0];
  args->backend_address[1] = backend.address[1];
  args->backend_address[2] = backend.address[2];
  args->backend_address[3] = backend.address[3];
  return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
