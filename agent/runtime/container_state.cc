#include "agent/runtime/container_state.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace ferry::runtime::detail {

api::Json specToJson(const ContainerSpec& s) {
  api::Json mounts = api::Json::array();
  for (const auto& m : s.mounts)
    mounts.push_back({{"source", m.source}, {"destination", m.destination}, {"readOnly", m.readOnly}});
  return {
      {"id", s.id},
      {"labels", s.labels},
      {"lowerDirs", s.lowerDirs},
      {"upperDir", s.upperDir},
      {"workDir", s.workDir},
      {"argv", s.argv},
      {"env", s.env},
      {"workingDir", s.workingDir},
      {"uid", s.uid},
      {"gid", s.gid},
      {"supplementalGroups", s.supplementalGroups},
      {"netnsPath", s.netnsPath},
      {"ipcnsPath", s.ipcnsPath},
      {"utsnsPath", s.utsnsPath},
      {"hostname", s.hostname},
      {"pidnsPath", s.pidnsPath},
      {"mounts", mounts},
      {"shmSizeBytes", s.shmSizeBytes},
      {"logPath", s.logPath},
      {"logMaxBytes", s.logMaxBytes},
      {"logMaxFiles", s.logMaxFiles},
      {"privileged", s.privileged},
      {"addCapabilities", s.addCapabilities},
      {"dropCapabilities", s.dropCapabilities},
      {"noNewPrivileges", s.noNewPrivileges},
      {"seccompRuntimeDefault", s.seccompRuntimeDefault},
      {"readOnlyRootFilesystem", s.readOnlyRootFilesystem},
  };
}

Result<ContainerSpec> specFromJson(const api::Json& j) {
  try {
    ContainerSpec s;
    s.id = j.at("id").get<std::string>();
    s.labels = j.value("labels", std::map<std::string, std::string>{});
    s.lowerDirs = j.at("lowerDirs").get<std::vector<std::string>>();
    s.upperDir = j.at("upperDir").get<std::string>();
    s.workDir = j.at("workDir").get<std::string>();
    s.argv = j.at("argv").get<std::vector<std::string>>();
    s.env = j.at("env").get<std::vector<std::string>>();
    s.workingDir = j.at("workingDir").get<std::string>();
    s.uid = j.at("uid").get<uid_t>();
    s.gid = j.at("gid").get<gid_t>();
    s.supplementalGroups = j.at("supplementalGroups").get<std::vector<gid_t>>();
    s.netnsPath = j.at("netnsPath").get<std::string>();
    s.ipcnsPath = j.at("ipcnsPath").get<std::string>();
    s.utsnsPath = j.at("utsnsPath").get<std::string>();
    s.hostname = j.at("hostname").get<std::string>();
    s.pidnsPath = j.at("pidnsPath").get<std::string>();
    for (const auto& m : j.at("mounts"))
      s.mounts.push_back({m.at("source").get<std::string>(), m.at("destination").get<std::string>(),
                          m.at("readOnly").get<bool>()});
    s.shmSizeBytes = j.at("shmSizeBytes").get<std::uint64_t>();
    s.logPath = j.at("logPath").get<std::string>();
    s.logMaxBytes = j.at("logMaxBytes").get<std::uint64_t>();
    s.logMaxFiles = j.at("logMaxFiles").get<int>();
    s.privileged = j.at("privileged").get<bool>();
    s.addCapabilities = j.at("addCapabilities").get<std::vector<std::string>>();
    s.dropCapabilities = j.at("dropCapabilities").get<std::vector<std::string>>();
    s.noNewPrivileges = j.at("noNewPrivileges").get<bool>();
    s.seccompRuntimeDefault = j.at("seccompRuntimeDefault").get<bool>();
    s.readOnlyRootFilesystem = j.at("readOnlyRootFilesystem").get<bool>();
    return s;
  } catch (const api::Json::exception& e) {
    return fail(EINVAL, fmt::format("container spec: {}", e.what()));
  }
}

Status writeFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return failErrno("create " + tmp);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return failErrno("write " + tmp, err);
    }
    done += n;
  }
  // No fsync: the state dir is on the run dir (tmpfs), forgotten at reboot anyway.
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) < 0) return failErrno("rename " + tmp);
  return {};
}

Result<std::string> readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return failErrno("open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<api::Json> readJsonFile(const std::string& path) {
  auto text = readWholeFile(path);
  if (!text) return fail(text.error());
  try {
    return api::Json::parse(*text);
  } catch (const api::Json::exception& e) {
    return fail(EINVAL, fmt::format("parse {}: {}", path, e.what()));
  }
}

std::uint64_t processStartTime(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  auto text = readWholeFile(path);
  if (!text) return 0;
  // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
  auto close = text->rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text->substr(close + 2));
  std::string field;
  // Fields 3..21 precede the start time.
  for (int i = 3; i <= 21; ++i) rest >> field;
  std::uint64_t start = 0;
  rest >> start;
  // A zombie has exited already: treat it as gone.
  if (text->size() > close + 2 && (*text)[close + 2] == 'Z') return 0;
  return start;
}

Timestamp fromNanos(std::int64_t ns) {
  return Timestamp(std::chrono::duration_cast<Timestamp::duration>(std::chrono::nanoseconds(ns)));
}
std::int64_t toNanos(Timestamp t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace ferry::runtime::detail
