# BPF objects the libbpf-bootstrap way: clang -target bpf -> .bpf.o -> bpftool gen skeleton -> .skel.h.
#
# vmlinux.h is generated at build time from the running kernel's BTF
# (/sys/kernel/btf/vmlinux): the programs are CO-RE, so the header only has to
# describe types that exist in every kernel we target, and generating it avoids
# committing a 100k-line file that would go stale. A machine without BTF cannot
# run the programs anyway.
find_program(CLANG clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(FERRY_VMLINUX_DIR ${CMAKE_BINARY_DIR}/vmlinux)
add_custom_command(
  OUTPUT ${FERRY_VMLINUX_DIR}/vmlinux.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${FERRY_VMLINUX_DIR}
  COMMAND ${BPFTOOL} btf dump file /sys/kernel/btf/vmlinux format c > ${FERRY_VMLINUX_DIR}/vmlinux.h
  COMMENT "Generating vmlinux.h from the running kernel's BTF")
add_custom_target(ferry_vmlinux DEPENDS ${FERRY_VMLINUX_DIR}/vmlinux.h)

# bpf_object(NAME SOURCE [HEADERS...]) -> target NAME_skel with ${CMAKE_CURRENT_BINARY_DIR}/NAME.skel.h
function(bpf_object name source)
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  # -mcpu=v3: clang 14 needs it to use the result of __sync_fetch_and_add (MACHINE.md).
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${CLANG} -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86
            -I${FERRY_VMLINUX_DIR} -I${CMAKE_CURRENT_SOURCE_DIR} -I${CMAKE_SOURCE_DIR}
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${source} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${source} ${ARGN} ferry_vmlinux ${FERRY_VMLINUX_DIR}/vmlinux.h
    COMMENT "BPF ${source}")
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h")
  add_custom_target(${name}_skel DEPENDS ${skel})
endfunction()
