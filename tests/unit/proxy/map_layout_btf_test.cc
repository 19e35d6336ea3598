// The C++ compiler and clang -target bpf must lay out bpf/lb_maps.h the same
// way: compare every field's offset and size with the BTF of the compiled
// object. Needs no privileges (reads the .bpf.o file).
#include "lb_maps.h"

#include <bpf/btf.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace {

struct Field {
  const char* structName;
  const char* member;
  size_t offset;
  size_t size;
};

#define FIELD(S, M) Field{#S, #M, offsetof(S, M), sizeof(((S*)nullptr)->M)}

const std::vector<Field> kFields = {
    FIELD(lb4_key, address), FIELD(lb4_key, port), FIELD(lb4_key, backend_slot), FIELD(lb4_key, protocol),
    FIELD(lb4_key, pad),
    FIELD(lb4_service, backend_id), FIELD(lb4_service, count), FIELD(lb4_service, service_id),
    FIELD(lb4_service, affinity_timeout_sec), FIELD(lb4_service, flags), FIELD(lb4_service, pad),
    FIELD(lb4_backend, address), FIELD(lb4_backend, port), FIELD(lb4_backend, protocol), FIELD(lb4_backend, pad),
    FIELD(lb_affinity_key, client_cookie), FIELD(lb_affinity_key, service_id), FIELD(lb_affinity_key, pad),
    FIELD(lb_affinity_value, last_used_ns), FIELD(lb_affinity_value, backend_id), FIELD(lb_affinity_value, backend_slot),
    FIELD(lb4_reverse_nat_key, socket_cookie), FIELD(lb4_reverse_nat_key, address), FIELD(lb4_reverse_nat_key, port),
    FIELD(lb4_reverse_nat_key, pad),
    FIELD(lb4_reverse_nat_value, address), FIELD(lb4_reverse_nat_value, port), FIELD(lb4_reverse_nat_value, pad),
    FIELD(lb4_select_args, address), FIELD(lb4_select_args, port), FIELD(lb4_select_args, protocol),
    FIELD(lb4_select_args, pad), FIELD(lb4_select_args, client_cookie), FIELD(lb4_select_args, result),
    FIELD(lb4_select_args, backend_address), FIELD(lb4_select_args, backend_port), FIELD(lb4_select_args, pad2),
    FIELD(lb4_select_args, pad3),
    FIELD(lb6_key, address), FIELD(lb6_key, port), FIELD(lb6_key, backend_slot), FIELD(lb6_key, protocol),
    FIELD(lb6_key, pad),
    FIELD(lb6_backend, address), FIELD(lb6_backend, port), FIELD(lb6_backend, protocol), FIELD(lb6_backend, pad),
    FIELD(lb6_reverse_nat_key, socket_cookie), FIELD(lb6_reverse_nat_key, address), FIELD(lb6_reverse_nat_key, port),
    FIELD(lb6_reverse_nat_key, pad), FIELD(lb6_reverse_nat_key, pad2),
    FIELD(lb6_reverse_nat_value, address), FIELD(lb6_reverse_nat_value, port), FIELD(lb6_reverse_nat_value, pad),
    FIELD(lb6_select_args, address), FIELD(lb6_select_args, port), FIELD(lb6_select_args, protocol),
    FIELD(lb6_select_args, pad), FIELD(lb6_select_args, pad1), FIELD(lb6_select_args, client_cookie),
    FIELD(lb6_select_args, result), FIELD(lb6_select_args, backend_port), FIELD(lb6_select_args, pad2),
    FIELD(lb6_select_args, backend_address),
    FIELD(lb4_socket_service, backend_address), FIELD(lb4_socket_service, service_address),
    FIELD(lb4_socket_service, backend_port), FIELD(lb4_socket_service, service_port), FIELD(lb4_socket_service, pad),
    FIELD(lb6_socket_service, backend_address), FIELD(lb6_socket_service, service_address),
    FIELD(lb6_socket_service, backend_port), FIELD(lb6_socket_service, service_port), FIELD(lb6_socket_service, pad),
};

const std::map<std::string, size_t> kSizes = {
    {"lb4_key", sizeof(lb4_key)},
    {"lb4_service", sizeof(lb4_service)},
    {"lb4_backend", sizeof(lb4_backend)},
    {"lb_affinity_key", sizeof(lb_affinity_key)},
    {"lb_affinity_value", sizeof(lb_affinity_value)},
    {"lb4_reverse_nat_key", sizeof(lb4_reverse_nat_key)},
    {"lb4_reverse_nat_value", sizeof(lb4_reverse_nat_value)},
    {"lb4_select_args", sizeof(lb4_select_args)},
    {"lb6_key", sizeof(lb6_key)},
    {"lb6_backend", sizeof(lb6_backend)},
    {"lb6_reverse_nat_key", sizeof(lb6_reverse_nat_key)},
    {"lb6_reverse_nat_value", sizeof(lb6_reverse_nat_value)},
    {"lb6_select_args", sizeof(lb6_select_args)},
    {"lb4_socket_service", sizeof(lb4_socket_service)},
    {"lb6_socket_service", sizeof(lb6_socket_service)},
};

TEST(MapLayoutBtf, EveryFieldMatchesTheCompiledObject) {
  btf* btf = btf__parse_elf(FERRY_SERVICE_LB_OBJECT, nullptr);
  ASSERT_NE(btf, nullptr) << "cannot read BTF of " << FERRY_SERVICE_LB_OBJECT;
  std::map<std::string, int> membersSeen;
  for (const auto& [name, size] : kSizes) {
    int id = btf__find_by_name_kind(btf, name.c_str(), BTF_KIND_STRUCT);
    ASSERT_GT(id, 0) << name << " missing from the object's BTF";
    const btf_type* t = btf__type_by_id(btf, id);
    EXPECT_EQ(t->size, size) << name;
    const btf_member* m = btf_members(t);
    for (int i = 0; i < btf_vlen(t); ++i, ++m) {
      std::string member = btf__name_by_offset(btf, m->name_off);
      bool found = false;
      for (const Field& f : kFields) {
        if (name != f.structName || member != f.member) continue;
        found = true;
        EXPECT_EQ(btf_member_bit_offset(t, i), f.offset * 8) << name << "." << member;
        EXPECT_EQ(btf_member_bitfield_size(t, i), 0u) << name << "." << member << ": no bitfields";
        __s64 memberSize = btf__resolve_size(btf, m->type);
        EXPECT_EQ(memberSize, static_cast<__s64>(f.size)) << name << "." << member;
      }
      EXPECT_TRUE(found) << name << "." << member << " is in the BTF but not checked here";
      membersSeen[name]++;
    }
  }
  size_t checked = 0;
  for (auto& [_, n] : membersSeen) checked += n;
  EXPECT_EQ(checked, kFields.size()) << "every listed field exists in the BTF";
  btf__free(btf);
}

}  // namespace
