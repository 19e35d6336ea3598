#include "agent/runtime/security.h"

#include <seccomp.h>
#include <fmt/format.h>

#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

namespace ferry::runtime {

const std::vector<std::string>& defaultCapabilities() {
  static const std::vector<std::string> caps = {
      "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
      "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"};
  return caps;
}

namespace detail {
namespace {

struct CapName {
  const char* name;
  int number;
};
constexpr CapName kCapNames[] = {
    {"CHOWN", 0}, {"DAC_OVERRIDE", 1}, {"DAC_READ_SEARCH", 2}, {"FOWNER", 3}, {"FSETID", 4}, {"KILL", 5},
    {"SETGID", 6}, {"SETUID", 7}, {"SETPCAP", 8}, {"LINUX_IMMUTABLE", 9}, {"NET_BIND_SERVICE", 10},
    {"NET_BROADCAST", 11}, {"NET_ADMIN", 12}, {"NET_RAW", 13}, {"IPC_LOCK", 14}, {"IPC_OWNER", 15},
    {"SYS_MODULE", 16}, {"SYS_RAWIO", 17}, {"SYS_CHROOT", 18}, {"SYS_PTRACE", 19}, {"SYS_PACCT", 20},
    {"SYS_ADMIN", 21}, {"SYS_BOOT", 22}, {"SYS_NICE", 23}, {"SYS_RESOURCE", 24}, {"SYS_TIME", 25},
    {"SYS_TTY_CONFIG", 26}, {"MKNOD", 27}, {"LEASE", 28}, {"AUDIT_WRITE", 29}, {"AUDIT_CONTROL", 30},
    {"SETFCAP", 31}, {"MAC_OVERRIDE", 32}, {"MAC_ADMIN", 33}, {"SYSLOG", 34}, {"WAKE_ALARM", 35},
    {"BLOCK_SUSPEND", 36}, {"AUDIT_READ", 37}, {"PERFMON", 38}, {"BPF", 39}, {"CHECKPOINT_RESTORE", 40},
};

Result<int> capabilityNumber(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::toupper(c); });
  if (name.rfind("CAP_", 0) == 0) name = name.substr(4);
  for (const auto& c : kCapNames)
    if (name == c.name) return c.number;
  return fail(EINVAL, fmt::format("unknown capability \"{}\"", name));
}

int lastCapability() {
  static int last = [] {
    int v = 40;
    if (FILE* f = std::fopen("/proc/sys/kernel/cap_last_cap", "re")) {
      if (std::fscanf(f, "%d", &v) != 1) v = 40;
      std::fclose(f);
    }
    return std::min(v, 63);
  }();
  return last;
}

// Syscalls no ordinary container needs and that widen the kernel's attack surface (the
// spirit of Docker's default profile, as a deny list). Most also need capabilities the
// default set lacks; denying them keeps a later capability grant from reopening them.
constexpr const char* kDeniedSyscalls[] = {
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load",
    "kexec_load", "keyctl", "lookup_dcookie", "mount", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace", "query_module",
    "quotactl", "reboot", "request_key", "setns", "settimeofday", "swapon", "swapoff", "sysfs",
    "_sysctl", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
    "syslog",
};

Result<std::vector<sock_filter>> buildSeccompProgram() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return fail(ENOMEM, "seccomp_init failed");
  auto cleanup = [&] { seccomp_release(ctx); };
  for (const char* name : kDeniedSyscalls) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0); rc < 0) {
      cleanup();
      return failErrno(fmt::format("seccomp rule for {}", name), -rc);
    }
  }
  // New user namespaces are how unprivileged code reaches most kernel attack surface.
  if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
      rc < 0) {
    cleanup();
    return failErrno("seccomp rule for clone", -rc);
  }
  // clone3 passes flags in memory a filter cannot read: make libc fall back to clone.
  if (int nr = seccomp_syscall_resolve_name("clone3"); nr != __NR_SCMP_ERROR)
    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);

  int fd = memfd_create("ferry-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    cleanup();
    return failErrno("memfd_create");
  }
  int rc = seccomp_export_bpf(ctx, fd);
  cleanup();
  if (rc < 0) {
    close(fd);
    return failErrno("seccomp_export_bpf", -rc);
  }
  off_t size = lseek(fd, 0, SEEK_END);
  std::vector<sock_filter> program(size / sizeof(sock_filter));
  if (pread(fd, program.data(), program.size() * sizeof(sock_filter), 0) != static_cast<ssize_t>(size)) {
    close(fd);
    return failErrno("read seccomp program");
  }
  close(fd);
  return program;
}

}  // namespace

Result<std::uint64_t> capabilityMask(const ContainerSpec& spec) {
  std::uint64_t all = (lastCapability() >= 63) ? ~0ull : ((1ull << (lastCapability() + 1)) - 1);
  if (spec.privileged) return all;
  std::uint64_t mask = 0;
  bool dropAll = false;
  for (const auto& d : spec.dropCapabilities)
    if (d == "ALL" || d == "all") dropAll = true;
  if (!dropAll)
    for (const auto& name : defaultCapabilities()) mask |= 1ull << *capabilityNumber(name);
  for (const auto& d : spec.dropCapabilities) {
    if (d == "ALL" || d == "all") continue;
    auto n = capabilityNumber(d);
    if (!n) return fail(n.error().wrap("securityContext.capabilities.drop"));
    mask &= ~(1ull << *n);
  }
  for (const auto& a : spec.addCapabilities) {
    if (a == "ALL" || a == "all") {
      mask = all;
      continue;
    }
    auto n = capabilityNumber(a);
    if (!n) return fail(n.error().wrap("securityContext.capabilities.add"));
    mask |= 1ull << *n;
  }
  return mask & all;
}

Result<const std::vector<sock_filter>*> runtimeDefaultSeccompProgram() {
  static std::once_flag once;
  static Result<std::vector<sock_filter>> program = fail(0, "");
  std::call_once(once, [] { program = buildSeccompProgram(); });
  if (!program) return fail(program.error());
  return &*program;
}

Result<Hardening> prepareHardening(const ContainerSpec& spec) {
  Hardening h;
  auto caps = capabilityMask(spec);
  if (!caps) return fail(caps.error());
  h.capabilities = *caps;
  h.privileged = spec.privileged;
  h.noNewPrivileges = spec.noNewPrivileges && !spec.privileged;
  if (spec.seccompRuntimeDefault && !spec.privileged) {
    auto prog = runtimeDefaultSeccompProgram();
    if (!prog) return fail(prog.error().wrap("seccomp RuntimeDefault"));
    h.seccomp = *prog;
  }
  h.uid = spec.uid;
  h.gid = spec.gid;
  h.groups = spec.supplementalGroups;
  return h;
}

void resetSignals() {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // fails harmlessly for KILL/STOP
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

int applyHardening(const Hardening& h, const char** step) {
  int last = lastCapability();
  for (int cap = 0; cap <= last; ++cap) {
    if (h.capabilities & (1ull << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
      *step = "drop capability from bounding set";
      return errno;
    }
  }
  // Seccomp first, while we still hold CAP_SYS_ADMIN: without no_new_privs loading a
  // filter needs it. The filter leaves setuid/capset/execve alone.
  if (h.seccomp) {
    sock_fprog prog{static_cast<unsigned short>(h.seccomp->size()), const_cast<sock_filter*>(h.seccomp->data())};
    if (h.noNewPrivileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
      *step = "set no_new_privs";
      return errno;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
      *step = "load seccomp filter";
      return errno;
    }
  }
  if (setgroups(h.groups.size(), h.groups.data()) < 0) {
    *step = "setgroups";
    return errno;
  }
  if (setresgid(h.gid, h.gid, h.gid) < 0) {
    *step = "setgid";
    return errno;
  }
  if (setresuid(h.uid, h.uid, h.uid) < 0) {
    *step = "setuid";
    return errno;
  }
  // A non-root user lost its permitted set with setuid; root keeps exactly the mask.
  if (h.uid == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    data[0].effective = data[0].permitted = data[0].inheritable = static_cast<std::uint32_t>(h.capabilities);
    data[1].effective = data[1].permitted = data[1].inheritable = static_cast<std::uint32_t>(h.capabilities >> 32);
    if (syscall(SYS_capset, &header, data) < 0) {
      *step = "capset";
      return errno;
    }
  }
  if (h.noNewPrivileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    *step = "set no_new_privs";
    return errno;
  }
  return 0;
}

}  // namespace detail
}  // namespace ferry::runtime
