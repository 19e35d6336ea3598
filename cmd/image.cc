// `ferry image import FILE | ls | rm REF | pull REF`: the node's local image store, the
// same one the agent uses (under --data-dir).
#include "cmd/subcommands.h"

#include <fmt/format.h>

#include <ctime>

#include "agent/images/image_store.h"
#include "cmd/options.h"

namespace ferry::cmd {
namespace {

constexpr const char* kImageUsage = R"(Usage: ferry image COMMAND [flags]

Commands:
  import FILE [--tag REF]   load a docker-archive or oci-archive tarball
  ls                        list images
  rm REF...                 remove references (a tag) or images (an id or name@digest)
  pull REF                  pull from a registry

)";

std::string humanSize(std::int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  return u == 0 ? fmt::format("{}B", bytes) : fmt::format("{:.3g}{}", v, units[u]);
}

std::string shortId(const std::string& id) {
  auto colon = id.find(':');
  return id.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

}  // namespace

int runImage(const std::vector<std::string>& args) {
  std::string dataDir = "/var/lib/ferry/agent";
  std::string tag;
  images::RegistryOptions registry;
  FlagTable flags = {
      {"data-dir", "agent data directory holding the image store", [&] { return dataDir; },
       [&](const std::string& v) -> Status { dataDir = v; return {}; }},
      {"tag", "import: also name the imported image REF", [&] { return tag; },
       [&](const std::string& v) -> Status { tag = v; return {}; }},
      {"plain-http-registry", "pull: a registry (host:port) reached over plain HTTP; repeatable",
       [&] { return std::string(); },
       [&](const std::string& v) -> Status { registry.plainHttpRegistries.push_back(v); return {}; }},
      {"registry-credentials", "pull: docker config.json with registry credentials",
       [&] { return registry.credentialFile; },
       [&](const std::string& v) -> Status { registry.credentialFile = v; return {}; }},
  };
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      fmt::print("{}{}", kImageUsage, flagHelp(flags));
      return 0;
    }
  std::vector<std::string> positional;
  if (auto st = parseFlags(flags, args, positional); !st) {
    fmt::print(stderr, "ferry image: {}\n", st.error().message);
    return 2;
  }
  if (positional.empty()) {
    fmt::print(stderr, "{}", kImageUsage);
    return 2;
  }
  std::string command = positional[0];
  std::vector<std::string> operands(positional.begin() + 1, positional.end());

  auto store = images::ImageStore::open(dataDir, registry);
  if (!store) {
    fmt::print(stderr, "ferry image: {}\n", store.error().message);
    return 1;
  }

  if (command == "import") {
    if (operands.size() != 1) {
      fmt::print(stderr, "ferry image import: exactly one FILE\n");
      return 2;
    }
    auto imported = (*store)->importArchive(operands[0], tag);
    if (!imported) {
      fmt::print(stderr, "ferry image: {}\n", imported.error().message);
      return 1;
    }
    for (const auto& image : *imported)
      fmt::print("imported {} {}\n", image.id,
                 image.references.empty() ? std::string("<none>") : fmt::format("{}", fmt::join(image.references, " ")));
    return 0;
  }
  if (command == "ls") {
    fmt::print("{:<56} {:<14} {:<8} {}\n", "IMAGE", "IMAGE ID", "SIZE", "DIGEST");
    for (const auto& image : (*store)->list()) {
      std::string digest = image.digest.empty() ? "<none>" : image.digest.substr(0, 19);
      if (image.references.empty())
        fmt::print("{:<56} {:<14} {:<8} {}\n", "<none>", shortId(image.id), humanSize(image.sizeBytes), digest);
      for (const auto& r : image.references)
        fmt::print("{:<56} {:<14} {:<8} {}\n", r, shortId(image.id), humanSize(image.sizeBytes), digest);
    }
    return 0;
  }
  if (command == "rm") {
    if (operands.empty()) {
      fmt::print(stderr, "ferry image rm: at least one REF\n");
      return 2;
    }
    int rc = 0;
    for (const auto& ref : operands) {
      if (auto st = (*store)->remove(ref); !st) {
        fmt::print(stderr, "ferry image rm: {}\n", st.error().message);
        rc = 1;
      } else {
        fmt::print("removed {}\n", ref);
      }
    }
    return rc;
  }
  if (command == "pull") {
    if (operands.size() != 1) {
      fmt::print(stderr, "ferry image pull: exactly one REF\n");
      return 2;
    }
    images::PullStats stats;
    auto image = (*store)->pull(operands[0], {}, &stats);
    if (!image) {
      fmt::print(stderr, "ferry image pull: {}\n", image.error().message);
      return 1;
    }
    fmt::print("pulled {} {} ({} blobs, {} downloaded)\n", image->id, image->digest, stats.blobsDownloaded,
               humanSize(stats.bytesDownloaded));
    return 0;
  }
  fmt::print(stderr, "ferry image: unknown command \"{}\"\n\n{}", command, kImageUsage);
  return 2;
}

}  // namespace ferry::cmd
