#include "agent/agent.h"

namespace ferry::agent {

// Placeholder until the agent lands (issues 5, 6, 9).
Status runAgent(const AgentConfig&, const std::atomic<bool>&, std::function<void()>) {
  return fail(ENOSYS, "the agent is not in this build yet");
}

}  // namespace ferry::agent
