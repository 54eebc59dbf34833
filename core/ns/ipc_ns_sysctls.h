// The sysctls each IPC namespace has of its own, by their /proc/sys path.
// The restore writes only these (an image cannot name another).
#pragma once

namespace cryo::ns {

inline constexpr const char* kIpcSysctls[] = {
    "kernel/shmmax",         "kernel/shmall",          "kernel/shmmni",         "kernel/shm_rmid_forced",
    "kernel/msgmax",         "kernel/msgmnb",          "kernel/msgmni",         "kernel/sem",
    "fs/mqueue/queues_max",  "fs/mqueue/msg_max",      "fs/mqueue/msgsize_max", "fs/mqueue/msg_default",
    "fs/mqueue/msgsize_default",
};

}  // namespace cryo::ns
