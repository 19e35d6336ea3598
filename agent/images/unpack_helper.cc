#include "agent/images/unpack_helper.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

extern char** environ;

namespace ferry::images {
namespace {

using json = nlohmann::json;

std::string besideThisProgram() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(kUnpackProgram) : (self.parent_path() / kUnpackProgram).string();
}

// Runs `program args...` with stdout on a pipe and returns its reply object; a failed
// request comes back as its own Error (code and message), anything else as an error naming
// the program.
Result<json> runRequest(const std::string& program, const std::vector<std::string>& args) {
  std::string what = fmt::format("{} {}", program, args.front());
  if (::access(program.c_str(), X_OK) != 0)
    return fail(Error::fromErrno(fmt::format("{}: the image unpacker (installed beside ferry)", program)));
  int out[2];
  if (::pipe2(out, O_CLOEXEC) < 0) return failErrno(what + ": pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<std::string> argvStrings{program};
  argvStrings.insert(argvStrings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argvStrings) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (err != 0) {
    ::close(out[0]);
    return fail(Error::fromErrno(what + ": start", err));
  }
  std::string reply;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  json doc = json::parse(reply, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object())
    return fail(Error{doc["error"].value("code", EIO), doc["error"].value("message", what + ": failed")});
  if (WIFSIGNALED(status)) return fail(Error{EIO, fmt::format("{}: killed by signal {}", what, WTERMSIG(status))});
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !doc.is_object())
    return fail(Error{EIO, fmt::format("{}: exit status {} without a reply", what, WEXITSTATUS(status))});
  return doc;
}

}  // namespace

UnpackHelper::UnpackHelper(std::string program) : program_(program.empty() ? besideThisProgram() : std::move(program)) {}

Result<UnpackedLayer> UnpackHelper::unpackLayer(const std::string& layerPath, const std::string& targetDir) const {
  auto doc = runRequest(program_, {"layer", layerPath, targetDir});
  if (!doc) return fail(doc.error());
  return UnpackedLayer{doc->value("sizeBytes", std::int64_t{0})};
}

Result<std::string> UnpackHelper::uncompressedDigest(const std::string& layerPath) const {
  auto doc = runRequest(program_, {"diff-id", layerPath});
  if (!doc) return fail(doc.error());
  return doc->value("diffId", std::string());
}

Result<std::map<std::string, std::string>> UnpackHelper::extractArchive(const std::string& tarPath,
                                                                        const std::string& dir) const {
  auto doc = runRequest(program_, {"archive", tarPath, dir});
  if (!doc) return fail(doc.error());
  std::map<std::string, std::string> files;
  if (doc->contains("files") && (*doc)["files"].is_object())
    for (const auto& [name, file] : (*doc)["files"].items())
      if (file.is_string()) files[name] = file.get<std::string>();
  return files;
}

}  // namespace ferry::images
