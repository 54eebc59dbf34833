#include "core/sys/proc.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/sys/io.h"

namespace cryo::proc {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

namespace {

std::vector<std::string_view> split_ws(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) i++;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') i++;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

template <typename T>
bool parse_num(std::string_view s, T& out, int base = 10) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && ptr == s.data() + s.size();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

Result<MapEntry> parse_map_line(std::string_view line) {
  // start-end perms offset major:minor inode [path]
  MapEntry e;
  auto bad = [&] { return Error(EINVAL, "bad maps line '" + std::string(line) + "'"); };
  size_t pos = 0;
  auto next_field = [&]() -> std::string_view {
    while (pos < line.size() && line[pos] == ' ') pos++;
    size_t start = pos;
    while (pos < line.size() && line[pos] != ' ') pos++;
    return line.substr(start, pos - start);
  };
  std::string_view range = next_field(), perms = next_field(), offset = next_field(),
                   dev = next_field(), inode = next_field();
  size_t dash = range.find('-');
  size_t colon = dev.find(':');
  if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4) return bad();
  if (!parse_num(range.substr(0, dash), e.start, 16) || !parse_num(range.substr(dash + 1), e.end, 16) ||
      !parse_num(offset, e.offset, 16) || !parse_num(dev.substr(0, colon), e.dev_major, 16) ||
      !parse_num(dev.substr(colon + 1), e.dev_minor, 16) || !parse_num(inode, e.inode))
    return bad();
  e.read = perms[0] == 'r';
  e.write = perms[1] == 'w';
  e.exec = perms[2] == 'x';
  e.shared = perms[3] == 's';
  while (pos < line.size() && line[pos] == ' ') pos++;
  e.path = std::string(line.substr(pos));
  return e;
}

bool is_map_header(std::string_view line) {
  // "7f..-7f.. r-xp ..." : a hex range followed by a space.
  size_t dash = line.find('-');
  size_t space = line.find(' ');
  if (dash == std::string_view::npos || space == std::string_view::npos || dash > space) return false;
  for (size_t i = 0; i < dash; i++)
    if (!isxdigit(static_cast<unsigned char>(line[i]))) return false;
  return true;
}

}  // namespace

Result<std::vector<MapEntry>> parse_maps(std::string_view text) {
  std::vector<MapEntry> out;
  for (std::string_view line : split_lines(text)) {
    if (line.empty()) continue;
    CRYO_ASSIGN(MapEntry e, parse_map_line(line));
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::map<uint64_t, SmapsEntry>> parse_smaps(std::string_view text) {
  std::map<uint64_t, SmapsEntry> out;
  SmapsEntry* current = nullptr;
  for (std::string_view line : split_lines(text)) {
    if (is_map_header(line)) {
      CRYO_ASSIGN(MapEntry e, parse_map_line(line));
      current = &out[e.start];
    } else if (current && line.starts_with("VmFlags:")) {
      for (auto f : split_ws(line.substr(8))) current->flags.emplace_back(f);
    } else if (current && (line.starts_with("Rss:") || line.starts_with("Swap:") ||
                           line.starts_with("Shared_Clean:") || line.starts_with("Shared_Dirty:"))) {
      auto words = split_ws(line.substr(line.find(':') + 1));
      uint64_t kb = 0;
      if (words.empty() || !parse_num(words[0], kb)) return Error(EINVAL, "bad smaps line '" + std::string(line) + "'");
      (line.starts_with("Shared_") ? current->shared_kb : current->resident_kb) += kb;
    }
  }
  return out;
}

Result<std::map<uint64_t, std::vector<std::string>>> parse_smaps_flags(std::string_view text) {
  CRYO_ASSIGN(auto smaps, parse_smaps(text));
  std::map<uint64_t, std::vector<std::string>> out;
  for (auto& [start, e] : smaps) out[start] = std::move(e.flags);
  return out;
}

Result<std::map<uint64_t, uint64_t>> parse_smaps_resident(std::string_view text) {
  CRYO_ASSIGN(auto smaps, parse_smaps(text));
  std::map<uint64_t, uint64_t> out;
  for (const auto& [start, e] : smaps) out[start] = e.resident_kb;
  return out;
}

Result<Stat> parse_stat(std::string_view text) {
  Stat st;
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open)
    return Error(EINVAL, "bad stat line");
  if (!parse_num(trim(text.substr(0, open)), st.pid)) return Error(EINVAL, "bad pid in stat");
  st.comm = std::string(text.substr(open + 1, close - open - 1));
  auto f = split_ws(trim(text.substr(close + 1)));
  // f[0] is field 3 (state); field N is f[N - 3].
  if (f.size() < 50) return Error(EINVAL, "short stat line");
  auto field = [&](int n) { return f[static_cast<size_t>(n - 3)]; };
  st.state = field(3)[0];
  bool ok = parse_num(field(4), st.ppid) && parse_num(field(5), st.pgid) && parse_num(field(6), st.sid) &&
            parse_num(field(7), st.tty_nr) && parse_num(field(8), st.tpgid) &&
            parse_num(field(20), st.num_threads) && parse_num(field(26), st.start_code) &&
            parse_num(field(27), st.end_code) && parse_num(field(28), st.start_stack) &&
            parse_num(field(45), st.start_data) && parse_num(field(46), st.end_data) &&
            parse_num(field(47), st.start_brk) && parse_num(field(48), st.arg_start) &&
            parse_num(field(49), st.arg_end) && parse_num(field(50), st.env_start) &&
            parse_num(field(51), st.env_end) && parse_num(field(52), st.exit_code);
  if (!ok) return Error(EINVAL, "bad number in stat line");
  return st;
}

Result<Status> parse_status(std::string_view text) {
  Status st;
  for (std::string_view line : split_lines(text)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    auto words = split_ws(value);
    auto id4 = [&](std::array<uint32_t, 4>& out) -> bool {
      if (words.size() != 4) return false;
      for (size_t i = 0; i < 4; i++)
        if (!parse_num(words[i], out[i])) return false;
      return true;
    };
    bool ok = true;
    if (key == "Uid") ok = id4(st.uids);
    else if (key == "Gid") ok = id4(st.gids);
    else if (key == "Groups") {
      for (auto w : words) {
        uint32_t g;
        if (!parse_num(w, g)) ok = false;
        st.groups.push_back(g);
      }
    } else if (key == "CapInh") ok = parse_num(value, st.cap_inh, 16);
    else if (key == "CapPrm") ok = parse_num(value, st.cap_prm, 16);
    else if (key == "CapEff") ok = parse_num(value, st.cap_eff, 16);
    else if (key == "CapBnd") ok = parse_num(value, st.cap_bnd, 16);
    else if (key == "CapAmb") ok = parse_num(value, st.cap_amb, 16);
    else if (key == "NoNewPrivs") ok = parse_num(value, st.no_new_privs);
    else if (key == "Seccomp") ok = parse_num(value, st.seccomp);
    else if (key == "SigIgn") ok = parse_num(value, st.sig_ignored, 16);
    else if (key == "SigCgt") ok = parse_num(value, st.sig_caught, 16);
    else if (key == "Umask") ok = parse_num(value, st.umask, 8);
    else if (key == "NSpid") {
      for (auto w : words) {
        pid_t p;
        if (!parse_num(w, p)) ok = false;
        st.nspid.push_back(p);
      }
    }
    if (!ok) return Error(EINVAL, "bad status line '" + std::string(line) + "'");
  }
  return st;
}

Result<std::vector<Limit>> parse_limits(std::string_view text) {
  // Column layout: "Limit" name (26 chars), soft (21), hard (21), units.
  static const char* const kNames[] = {
      "Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
      "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
      "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
      "Max realtime priority", "Max realtime timeout"};
  static_assert(sizeof kNames / sizeof kNames[0] == RLIMIT_NLIMITS);
  std::vector<Limit> out(RLIMIT_NLIMITS);
  std::vector<bool> seen(RLIMIT_NLIMITS);
  for (std::string_view line : split_lines(text)) {
    for (int i = 0; i < RLIMIT_NLIMITS; i++) {
      std::string_view name = kNames[i];
      if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ' ') continue;
      auto words = split_ws(line.substr(name.size()));
      if (words.size() < 2) return Error(EINVAL, "bad limits line '" + std::string(line) + "'");
      auto value = [](std::string_view w, uint64_t& v) {
        if (w == "unlimited") {
          v = RLIM_INFINITY;
          return true;
        }
        return parse_num(w, v);
      };
      if (!value(words[0], out[static_cast<size_t>(i)].soft) || !value(words[1], out[static_cast<size_t>(i)].hard))
        return Error(EINVAL, "bad limits line '" + std::string(line) + "'");
      seen[static_cast<size_t>(i)] = true;
    }
  }
  for (int i = 0; i < RLIMIT_NLIMITS; i++)
    if (!seen[static_cast<size_t>(i)]) return Error(EINVAL, std::string("limits lack '") + kNames[i] + "'");
  return out;
}

Result<FdInfo> parse_fdinfo(std::string_view text) {
  FdInfo info;
  for (std::string_view line : split_lines(text)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string key(trim(line.substr(0, colon)));
    std::string_view value = trim(line.substr(colon + 1));
    bool ok = true;
    if (key == "pos") ok = parse_num(value, info.pos);
    else if (key == "flags") ok = parse_num(value, info.flags, 8);
    else if (key == "mnt_id") ok = parse_num(value, info.mnt_id);
    else if (key == "ino") ok = parse_num(value, info.ino);
    if (!ok) return Error(EINVAL, "bad fdinfo line '" + std::string(line) + "'");
    info.fields.emplace(key, std::string(value));
  }
  return info;
}

namespace {

Result<std::string_view> field(const FdInfo& info, const std::string& key, const char* kind) {
  auto it = info.fields.find(key);
  if (it == info.fields.end()) return Error(EINVAL, std::string(kind) + " fdinfo lacks '" + key + "'");
  return std::string_view(it->second);
}

template <typename T>
Result<T> number_field(const FdInfo& info, const std::string& key, const char* kind, int base = 10) {
  CRYO_ASSIGN(std::string_view text, field(info, key, kind));
  T out{};
  if (!parse_num(text, out, base)) return Error(EINVAL, std::string(kind) + " fdinfo: bad " + key + " '" + std::string(text) + "'");
  return out;
}

// "(seconds, nanoseconds)" -> nanoseconds
Result<uint64_t> timespec_field(const FdInfo& info, const std::string& key) {
  CRYO_ASSIGN(std::string_view text, field(info, key, "timerfd"));
  uint64_t sec = 0, nsec = 0;
  size_t comma = text.find(',');
  if (text.size() < 5 || text.front() != '(' || text.back() != ')' || comma == std::string_view::npos ||
      !parse_num(trim(text.substr(1, comma - 1)), sec) ||
      !parse_num(trim(text.substr(comma + 1, text.size() - comma - 2)), nsec) || nsec >= 1000000000 ||
      sec > UINT64_MAX / 1000000000 - 1)
    return Error(EINVAL, "timerfd fdinfo: bad " + key + " '" + std::string(text) + "'");
  return sec * 1000000000 + nsec;
}

}  // namespace

Result<EventFdInfo> parse_eventfd(const FdInfo& info) {
  EventFdInfo out;
  CRYO_ASSIGN(out.count, number_field<uint64_t>(info, "eventfd-count", "eventfd", 16));
  if (!info.fields.count("eventfd-semaphore"))
    return Error(EOPNOTSUPP, "this kernel does not show whether an eventfd counts as a semaphore (Linux 6.6 does)");
  CRYO_ASSIGN(int semaphore, number_field<int>(info, "eventfd-semaphore", "eventfd"));
  out.semaphore = semaphore != 0;
  return out;
}

Result<uint64_t> parse_signalfd_mask(const FdInfo& info) {
  return number_field<uint64_t>(info, "sigmask", "signalfd", 16);
}

Result<TimerFdInfo> parse_timerfd(const FdInfo& info) {
  TimerFdInfo out;
  CRYO_ASSIGN(out.clockid, number_field<int>(info, "clockid", "timerfd"));
  CRYO_ASSIGN(out.ticks, number_field<uint64_t>(info, "ticks", "timerfd"));
  CRYO_ASSIGN(out.settime_flags, number_field<uint32_t>(info, "settime flags", "timerfd", 8));
  CRYO_ASSIGN(out.value_ns, timespec_field(info, "it_value"));
  CRYO_ASSIGN(out.interval_ns, timespec_field(info, "it_interval"));
  return out;
}

Result<std::vector<EpollTarget>> parse_epoll_targets(std::string_view fdinfo_text) {
  std::vector<EpollTarget> out;
  for (std::string_view line : split_lines(fdinfo_text)) {
    if (!line.starts_with("tfd:")) continue;
    auto words = split_ws(line);
    EpollTarget t;
    bool ok = words.size() >= 6 && words[2] == "events:" && words[4] == "data:" && parse_num(words[1], t.fd) &&
              parse_num(words[3], t.events, 16) && parse_num(words[5], t.data, 16);
    if (!ok) return Error(EINVAL, "bad epoll fdinfo line '" + std::string(line) + "'");
    out.push_back(t);
  }
  return out;
}

Result<std::vector<PosixTimerInfo>> parse_posix_timers(std::string_view text) {
  std::vector<PosixTimerInfo> out;
  for (std::string_view line : split_lines(text)) {
    auto bad = [&] { return Error(EINVAL, "bad /proc/PID/timers line '" + std::string(line) + "'"); };
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon), value = trim(line.substr(colon + 1));
    if (key == "ID") {
      out.emplace_back();
      if (!parse_num(value, out.back().id)) return bad();
      continue;
    }
    if (out.empty()) return bad();
    auto& t = out.back();
    if (key == "signal") {  // "34/00007f0000001234"
      size_t slash = value.find('/');
      if (slash == std::string_view::npos || !parse_num(value.substr(0, slash), t.signo) ||
          !parse_num(value.substr(slash + 1), t.value, 16))
        return bad();
    } else if (key == "notify") {  // "signal/pid.1234", "none/pid.1", "signal/tid.1240"
      size_t slash = value.find('/'), dot = value.find('.');
      if (slash == std::string_view::npos || dot == std::string_view::npos || dot < slash) return bad();
      std::string_view how = value.substr(0, slash), whom = value.substr(slash + 1, dot - slash - 1);
      if (how == "signal") t.notify = SIGEV_SIGNAL;
      else if (how == "none") t.notify = SIGEV_NONE;
      else if (how == "thread") t.notify = SIGEV_THREAD;
      else return bad();
      if (whom == "tid") t.notify |= SIGEV_THREAD_ID;
      else if (whom != "pid") return bad();
      if (!parse_num(value.substr(dot + 1), t.target)) return bad();
    } else if (key == "ClockID") {
      if (!parse_num(value, t.clockid)) return bad();
    }
  }
  return out;
}

Result<std::vector<InotifyWatch>> parse_inotify_watches(std::string_view fdinfo_text) {
  std::vector<InotifyWatch> out;
  for (std::string_view line : split_lines(fdinfo_text)) {
    if (!line.starts_with("inotify ")) continue;
    InotifyWatch w;
    uint32_t handle_bytes = 0;
    std::string_view hex;
    bool ok = true;
    for (auto word : split_ws(line.substr(8))) {
      size_t colon = word.find(':');
      if (colon == std::string_view::npos) continue;
      std::string_view key = word.substr(0, colon), value = word.substr(colon + 1);
      if (key == "wd") ok = ok && parse_num(value, w.wd, 16);
      else if (key == "ino") ok = ok && parse_num(value, w.ino, 16);
      else if (key == "sdev") ok = ok && parse_num(value, w.sdev, 16);
      else if (key == "mask") ok = ok && parse_num(value, w.mask, 16);
      else if (key == "ignored_mask") ok = ok && parse_num(value, w.ignored_mask, 16);
      else if (key == "fhandle-bytes") ok = ok && parse_num(value, handle_bytes, 16);
      else if (key == "fhandle-type") ok = ok && parse_num(value, w.handle_type, 16);
      else if (key == "f_handle") hex = value;
    }
    ok = ok && hex.size() == 2 * handle_bytes && handle_bytes > 0 && handle_bytes <= 128;
    for (size_t i = 0; ok && i < handle_bytes; i++) {
      uint8_t byte = 0;
      ok = parse_num(hex.substr(2 * i, 2), byte, 16);
      w.handle.push_back(static_cast<char>(byte));
    }
    if (!ok) return Error(EINVAL, "bad inotify fdinfo line '" + std::string(line) + "'");
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::vector<SysvShmInfo>> parse_sysv_shm(std::string_view text) {
  std::vector<SysvShmInfo> out;
  bool header = true;
  for (std::string_view line : split_lines(text)) {
    if (header) {  // "key shmid perms size cpid lpid nattch uid gid cuid cgid ..."
      header = false;
      continue;
    }
    auto w = split_ws(line);
    if (w.empty()) continue;
    SysvShmInfo s;
    if (w.size() < 11 || !parse_num(w[0], s.key) || !parse_num(w[1], s.id) || !parse_num(w[2], s.perms, 8) ||
        !parse_num(w[3], s.size) || !parse_num(w[6], s.nattch) || !parse_num(w[7], s.uid) || !parse_num(w[8], s.gid))
      return Error(EINVAL, "bad /proc/sysvipc/shm line '" + std::string(line) + "'");
    out.push_back(s);
  }
  return out;
}

std::vector<pid_t> parse_pid_list(std::string_view text) {
  std::vector<pid_t> out;
  for (auto w : split_ws(text)) {
    pid_t p;
    for (auto part : split_lines(w))
      if (parse_num(part, p)) out.push_back(p);
  }
  return out;
}

namespace {

Result<std::vector<std::string>> list_dir(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (!dir) return errno_error("opendir " + path);
  std::vector<std::string> names;
  while (struct dirent* d = readdir(dir)) {
    if (d->d_name[0] == '.') continue;
    names.emplace_back(d->d_name);
  }
  closedir(dir);
  return names;
}

template <typename T>
Result<std::vector<T>> list_numeric(const std::string& path) {
  CRYO_ASSIGN(auto names, list_dir(path));
  std::vector<T> out;
  for (auto& n : names) {
    T v;
    if (parse_num(std::string_view(n), v)) out.push_back(v);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<std::vector<pid_t>> list_threads(pid_t pid) {
  return list_numeric<pid_t>("/proc/" + std::to_string(pid) + "/task");
}

Result<std::vector<pid_t>> list_children(pid_t pid, pid_t tid) {
  CRYO_ASSIGN(std::string text,
              read_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/children"));
  return parse_pid_list(text);
}

Result<bool> any_other_process_fd(const std::function<bool(int fd_dir, const char* name)>& match) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return errno_error("opendir /proc");
  std::string self = std::to_string(::getpid());
  bool found = false;
  while (!found) {
    struct dirent* d = ::readdir(proc);
    if (!d) break;
    if (d->d_name[0] < '0' || d->d_name[0] > '9' || self == d->d_name) continue;
    DIR* fds = ::opendir((std::string("/proc/") + d->d_name + "/fd").c_str());
    if (!fds) continue;  // gone, or a kernel thread's
    while (struct dirent* f = ::readdir(fds))
      if (f->d_name[0] != '.' && match(::dirfd(fds), f->d_name)) {
        found = true;
        break;
      }
    ::closedir(fds);
  }
  ::closedir(proc);
  return found;
}

Result<std::vector<int>> list_fds(pid_t pid) { return list_numeric<int>("/proc/" + std::to_string(pid) + "/fd"); }

Result<Stat> read_stat(pid_t pid) {
  CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/stat"));
  return parse_stat(text).wrap("/proc/" + std::to_string(pid) + "/stat");
}

Result<Status> read_status(pid_t pid) {
  CRYO_ASSIGN(std::string text, read_file("/proc/" + std::to_string(pid) + "/status"));
  return parse_status(text).wrap("/proc/" + std::to_string(pid) + "/status");
}

}  // namespace cryo::proc
