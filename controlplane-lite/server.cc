#include "controlplane-lite/server.h"

namespace ferry::cp {

// Placeholder until the API server lands (issue 3).
Status runServer(const ServerConfig&, const std::atomic<bool>&, std::function<void()>) {
  return fail(ENOSYS, "the API server is not in this build yet");
}

}  // namespace ferry::cp
