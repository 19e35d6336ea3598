#include "agent/runtime/pod_worker.h"
