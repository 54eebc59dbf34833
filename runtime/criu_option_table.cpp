// The table of CRIU 4.2's options and cryo's answer to each (the README's
// "CRIU's options" table is made from it).
#include "runtime/criu_options.h"

namespace cryo::cli::criu {
namespace {

constexpr unsigned D = kDump, P = kPreDump, R = kRestore, C = kCheck, kAll = D | P | R | C;
constexpr Verdict kImpl = Verdict::kImplemented, kAcc = Verdict::kAccepted, kRef = Verdict::kRefused;
constexpr Value kNo = Value::kNone, kReq = Value::kRequired, kOpt = Value::kOptional;
// Row flags.
constexpr unsigned kNeg = 1, kMany = 2, kOwn = 4;

Option row(const char* name, char letter, Value value, unsigned flags, unsigned verbs, Verdict verdict,
           const char* note) {
  return Option{name, letter, value, (flags & kNeg) != 0, (flags & kMany) != 0, verbs, verdict, note,
                (flags & kOwn) != 0};
}

const char* const kNoMountNs =
    "cryo saves a tree's own mount namespace whole, finds the source of every bind of an outside path "
    "itself and binds it again from that path (restore --root moves the root), so there is nothing for "
    "it to change";
const char* const kPageServerOnly = "used only by CRIU's page server when handed a socket (cryo page-server makes its own)";

std::vector<Option> make_table() {
  return {
      // Common to every command.
      row("help", 'h', kNo, 0, kAll, kImpl, "prints the verb's usage and exits 0"),
      row("version", 'V', kNo, 0, kAll, kImpl, "prints cryo's version and the image format version it writes and reads"),
      row("verbosity", 'v', kOpt, kMany, kAll, kImpl,
          "-v, -vv..., -vN, --verbosity[=N]: the log level, 2 (warnings) by default; 0 nothing, 1 errors, "
          "3 information, 4 debug; `-v N` works too"),
      row("log-file", 'o', kReq, 0, kAll, kImpl,
          "the log file; a relative path goes into the work directory; `-` is stderr. Errors always reach "
          "stderr too"),
      row("images-dir", 'D', kReq, 0, D | P | R, kImpl, "the image directory (the current one by default)"),
      row("work-dir", 'W', kReq, 0, D | P | R, kImpl,
          "where a relative --log-file or --pidfile goes (the image directory by default)"),
      row("pidfile", 0, kReq, 0, R, kImpl, "the restored root's pid is written there"),
      row("config", 0, kReq, kMany, kAll, kImpl,
          "options are read from the file first (YAML as in cryo.yaml when its name ends in .yaml or .yml; else "
          "CRIU's format: one a line, long names without dashes, a value after blanks or in double quotes, "
          "# comments); the command line's come after and win"),
      row("no-default-config", 0, kNo, 0, kAll, kImpl,
          "skips cryo.yaml ($CRYO_CONFIG, else /etc/cryo/cryo.yaml), which every process verb reads first"),
      row("display-stats", 0, kNo, kNeg, D | R, kImpl,
          "prints the freeze time, the total time, the tasks and the bytes of memory at the end "
          "(stats-dump.json is written anyway)"),
      row("close", 0, kReq, kMany, kAll, kImpl, "closes that descriptor of cryo's before anything else"),
      row("libdir", 'L', kReq, 0, kAll, kAcc, "cryo has no plugins to load"),
      row("action-script", 0, kReq, kMany, D | P | R, kImpl,
          "runs the script at each stage (pre-dump, network-lock, post-dump, network-unlock, pre-restore, "
          "setup-namespaces, post-setup-namespaces, post-restore, pre-resume, post-resume) with CRTOOLS_SCRIPT_ACTION, "
          "CRTOOLS_IMAGE_DIR and CRTOOLS_INIT_PID set; one failing before the tree runs again fails the command"),
      row("log-pid", 0, kNo, kNeg, D | P | R, kAcc, "cryo is one process: its log is one file"),
      row("deprecated", 0, kNo, kNeg, kAll, kAcc, "nothing cryo does is deprecated"),
      row("stream", 0, kNo, kNeg, D | P | R, kRef, "images go to and come from the image directory only (no image streamer)"),
      row("status-fd", 0, kReq, 0, D, kImpl,
          "dump --lazy-pages: one zero byte, then closed, once the image is written and its pages are served; "
          "`cryo page-server` and `cryo lazy-pages` write it once they listen"),
      row("ms", 0, kNo, 0, kAll, kRef, "CRIU itself refuses it (it is gone)"),

      // The tree and how the dump leaves it.
      row("tree", 't', kReq, 0, D | P, kImpl, "the pid of the tree's root"),
      row("leave-running", 'R', kNo, 0, D, kImpl, "the tree runs on after the dump instead of being killed"),
      row("leave-stopped", 's', kNo, 0, D | R, kRef,
          "a tree cannot be left stopped: after a dump it is killed (or runs on with -R), after a restore "
          "it runs"),
      row("freeze-cgroup", 0, kReq, 0, D | P, kImpl,
          "a v1 freezer or v2 cgroup directory holding the tree alone: frozen while cryo seizes every thread "
          "in it, so a tree that forks cannot outrun the freeze; left frozen or thawed as it was found"),
      row("timeout", 0, kReq, 0, D | P, kImpl,
          "how many seconds finding and stopping the tree may take (10 by default)"),

      // Resources and how they are saved.
      row("shell-job", 'j', kNo, kNeg, D | R, kImpl,
          "a shell job: its session, process group and terminal may lie outside the tree; needed on both "
          "sides"),
      row("tcp-established", 0, kNo, kNeg, D | R, kImpl,
          "established TCP connections are saved and made again, packets held back by a network lock "
          "in between"),
      row("skip-in-flight", 0, kNo, kNeg, D, kImpl,
          "a connection waiting in a listener's queue whose client is outside the tree is left out of "
          "the image (its client sees it reset) instead of failing the dump"),
      row("tcp-close", 0, kNo, kNeg, D | R, kImpl,
          "dump: TCP connections are saved without their state and nothing is locked; restore: every "
          "connection comes back closed (reads see the end of the stream, writes fail with EPIPE)"),
      row("network-lock", 0, kReq, 0, D, kImpl, "nftables (the default), iptables or skip"),
      row("network-lock", 0, kReq, 0, R, kAcc, "the image names its lock, and the restore removes that one"),
      row("ext-unix-sk", 'x', kOpt, 0, D, kImpl,
          "unix sockets whose peer is outside the tree are saved, and connect to the peer's name again "
          "on restore; a list of inodes (--ext-unix-sk=INO) is refused, since cryo cannot allow only "
          "some of them"),
      row("file-locks", 'l', kNo, kNeg, D | R, kAcc,
          "flock(), POSIX and OFD locks and leases are always saved and taken again (a lease being "
          "broken fails the dump, naming the pid and fd)"),
      row("link-remap", 0, kNo, kNeg, D | R, kRef,
          "an open file whose name was removed while another link remains cannot be linked back (a "
          "deleted file with no link left is saved in the image without it)"),
      row("ghost-limit", 0, kReq, 0, D, kImpl,
          "the largest deleted file whose data the image takes: bytes, or with K, M or G (256M by "
          "default; CRIU's is 1M)"),
      row("ghost-fiemap", 0, kNo, kNeg, D, kAcc, "only the data of a deleted file is stored, never its holes"),
      row("evasive-devices", 0, kNo, kNeg, D | R, kAcc,
          "a permission to use another path to a device: cryo reopens a device file at the path it had and "
          "needs no other (one that is not that device there fails the restore, naming it); runc asks it on "
          "every restore"),
      row("force-irmap", 0, kNo, kNeg, D | P, kRef,
          "an inotify watch is found again by its file handle, never resolved to a path"),
      row("irmap-scan-path", 0, kReq, kMany, D | P, kRef,
          "cryo does not resolve inotify watches to paths (see --force-irmap)"),
      row("allow-uprobes", 0, kNo, kNeg, D, kRef, "a tree with a [uprobes] mapping cannot be dumped"),
      row("file-validation", 0, kReq, 0, D | R, kAcc,
          "filesize or buildid: cryo always checks a mapped file's size and a checksum of its whole "
          "contents, which covers both"),
      row("skip-file-rwx-check", 0, kNo, kNeg, R, kAcc,
          "cryo makes no separate check of a restored file's permission bits"),
      row("cpu-cap", 0, kOpt, 0, D | R, kRef,
          "cryo checks no CPU capabilities, so only --cpu-cap=none (no check) is accepted"),
      row("lazy-pages", 0, kNo, 0, R, kImpl,
          "private anonymous memory is registered with userfaultfd instead of filled, and the tree runs at once; "
          "`cryo lazy-pages -D DIR`, started first, brings each page in on its first touch and the rest in the "
          "background (README: Lazy restore)"),
      row("lazy-pages", 0, kNo, 0, D, kImpl,
          "a lazy migration's source: the image gets everything but private anonymous memory, which the frozen "
          "tree keeps and the dump serves at --address/--port (TLS with --tls) to `cryo lazy-pages --page-server` "
          "on the destination; the tree is killed (runs on with -R) once the daemon has every page, and runs on "
          "if the daemon goes away first (README: Live migration)"),
      row("unprivileged", 0, kNo, kNeg, kAll, kAcc,
          "cryo asks for the same capabilities with or without it (`cryo check` lists them)"),

      // Memory: incremental dumps and page servers.
      row("track-mem", 0, kNo, kNeg, D | P, kAcc,
          "pre-dump always tracks the tree's writes (userfaultfd write-protection, read with PAGEMAP_SCAN: "
          "no soft-dirty needed), and a dump with --prev-images-dir always uses them"),
      row("prev-images-dir", 0, kReq, 0, D | P, kImpl,
          "a pre-dump (a path relative to the image directory, as CRIU's): only the pages written since it are "
          "stored, the others are read from it (and its own parents) on restore; the image links it as `parent`"),
      row("auto-dedup", 0, kNo, kNeg, D, kAcc, "parent images are left whole: cryo never punches out their pages a later dump replaced"),
      row("auto-dedup", 0, kNo, kNeg, R, kRef, "cryo never changes an image while restoring it"),
      row("pre-dump-mode", 0, kReq, 0, P, kAcc, "splice or read: cryo copies the pages one way whatever it is told"),
      row("page-server", 0, kNo, kNeg, D, kImpl,
          "pages.img goes to `cryo page-server` at --address/--port (TLS with --tls) instead of the image "
          "directory, which gets the other files; the dump fails, the tree running on, if the server refuses "
          "the pages or goes away"),
      row("page-server", 0, kNo, kNeg, P, kRef, "a pre-dump's pages go to its image directory only (not yet to a page server)"),
      row("address", 0, kReq, 0, D, kImpl, "the page server's address (a name, IPv4 or IPv6); with --lazy-pages the address to serve at (every one by default)"),
      row("port", 0, kReq, 0, D, kImpl, "the page server's port; with --lazy-pages the port to serve at (0: a free one, printed)"),
      row("ps-socket", 0, kReq, 0, 0, kAcc, kPageServerOnly),
      row("tls", 0, kNo, kNeg, D, kImpl,
          "pages go to the page server over TLS (OpenSSL, 1.2 or later), each side proving itself with a "
          "certificate the other's CA signed"),
      row("tls-cacert", 0, kReq, 0, D, kImpl, "the CA certificate (PEM) the server's is checked against (the system's by default)"),
      row("tls-cacrl", 0, kReq, 0, D, kRef, "cryo checks no certificate revocation list"),
      row("tls-cert", 0, kReq, 0, D, kImpl, "the certificate (PEM) cryo presents"),
      row("tls-key", 0, kReq, 0, D, kImpl, "the private key (PEM) of --tls-cert"),
      row("tls-no-cn-verify", 0, kNo, 0, D, kImpl,
          "the server's certificate need not name the --address dialled (it must still be signed by the CA)"),

      // cgroups.
      row("manage-cgroups", 0, kOpt, 0, D | P, kAcc,
          "every process's cgroup membership and the properties of the tree's cgroups are always saved; a "
          "mode is checked"),
      row("manage-cgroups", 0, kOpt, 0, R, kImpl,
          "soft (the default): each process joins its cgroups, missing ones are made with their properties; "
          "full: the same, properties set on every saved cgroup; none: they must exist, no properties; props: "
          "they must exist and get their properties; strict: they must all be missing and are made with their "
          "properties; ignore: it stays in cryo's"),
      row("cgroup-root", 0, kReq, kMany, D | R, kImpl,
          "[controller:]/path: on dump the cgroup whose descendants are saved (cryo's own by default); on "
          "restore where the root process's cgroup goes, the tree's cgroups below it following"),
      row("cgroup-props", 0, kReq, 0, D, kRef,
          "cryo saves a fixed list of properties for each controller (README: What is saved), not a custom one"),
      row("cgroup-props-file", 0, kReq, 0, D, kRef,
          "cryo saves a fixed list of properties for each controller (README: What is saved), not a custom one"),
      row("cgroup-dump-controller", 0, kReq, kMany, D, kRef,
          "cryo saves the properties of every controller and cannot choose some"),
      row("cgroup-yard", 0, kReq, 0, D | R, kAcc,
          "cryo mounts no cgroup yard: it uses the hierarchies mounted under /sys/fs/cgroup"),

      // Namespaces, mounts and the restore's surroundings.
      row("root", 'r', kReq, 0, R, kImpl,
          "the directory that becomes the root of the tree's own mount namespace (by default the one it "
          "was at dump time); a tree that shares cryo's mount namespace takes only `/`"),
      row("external", 0, kReq, kMany, D | R, kRef,
          "tty[RDEV:DEV] (dump) names a terminal outside the tree that the tree may hold without "
          "--shell-job: the restore wants another in its place (--inherit-fd fd[N]:tty[RDEV:DEV]); file, unix, "
          "and pid resources cannot be named; mnt[MOUNT_POINT]:KEY (dump) names a mount of the tree's own "
          "mount namespace external, and mnt[KEY]:PATH (restore) binds PATH there (a key may also be a mount "
          "point); net[INODE]:KEY (dump) names the tree's network namespace external: nothing of it is saved, "
          "the restore joins the one --inherit-fd fd[N]:KEY or --join-ns gives; veth[INNER]:OUTER[@BRIDGE] "
          "(restore) names the outer end of a veth of the tree's namespace (made in cryo's, attached to BRIDGE), "
          "by default the name it had; dev and macvlan ones are accepted: a cryo image holds no such device"),
      row("inherit-fd", 0, kReq, kMany, R, kImpl,
          "fd[N]:KEY: cryo's fd N stands in for the file KEY of the image, for every process that had it. "
          "KEY is pipe:[INODE] for a pipe (an external one, whose other end was outside the tree: the tree "
          "gets a new description of the pipe of fd N, with the access mode and flags it had, and none of the "
          "old pipe's queued bytes), tty[RDEV:DEV] for a --shell-job's terminal or one dumped with --external, "
          "or a regular file's path "
          "without its leading slash (tmp/log: fd N's own description, offset and flags, is shared). cryo "
          "inspect lists the keys. A key that names nothing in the image fails the restore; others (file[...], "
          "sockets, FIFOs, directories, devices) are refused by name; the key of a network namespace dumped with "
          "--external net[INODE]:KEY makes fd N (a network namespace) the tree's. debug[N]:TEXT writes TEXT to fd N"),
      row("join-ns", 'J', kReq, kMany, R, kImpl,
          "net:PID or net:PATH (/proc/PID/ns/net, /run/netns/NAME): the tree goes into that network namespace "
          "(as it is: nothing of the image's configuration is made in it) instead of a new one; the tree must "
          "have had one of its own. Other namespaces are refused: they are made new like those the tree had"),
      row("ext-mount-map", 'M', kReq, kMany, D | R, kAcc, kNoMountNs),
      row("skip-mnt", 0, kReq, kMany, D, kAcc, kNoMountNs),
      row("enable-fs", 0, kReq, kMany, D, kAcc, kNoMountNs),
      row("enable-external-sharing", 0, kNo, 0, D | R, kAcc, kNoMountNs),
      row("enable-external-masters", 0, kNo, 0, D | R, kAcc, kNoMountNs),
      row("mntns-compat-mode", 0, kNo, kNeg, R, kAcc, kNoMountNs),
      row("lsm-mount-context", 0, kReq, 0, R, kAcc, kNoMountNs),
      row("veth-pair", 0, kReq, kMany, R, kImpl,
          "INNER=OUTER[@BRIDGE]: the same as --external veth[INNER]:OUTER[@BRIDGE]"),
      row("empty-ns", 0, kReq, 0, D | R, kImpl,
          "net (the only value CRIU takes): the dump saves of the tree's network namespace only whether lo is up; "
          "the restore makes a new namespace with lo alone, whatever the image holds, for the caller to set up"),
      row("weak-sysctls", 0, kNo, kNeg, R, kImpl,
          "a sysctl of the tree's network namespace that this kernel does not have is skipped, with a warning, "
          "instead of failing the restore (those of an IPC namespace exist wherever IPC namespaces do)"),
      row("lsm-profile", 0, kReq, 0, R, kRef, "no AppArmor or SELinux profile is set on restore"),

      // How the restore ends.
      row("restore-detached", 'd', kNo, kNeg, R, kImpl,
          "cryo returns once the tree runs, instead of waiting for the root and exiting with its status"),
      row("daemon", 0, kNo, kNeg, R, kImpl, "the same as --restore-detached"),
      row("restore-sibling", 'S', kNo, kNeg, R, kRef,
          "the restored root is cryo's child (after -d it goes to the nearest subreaper), never its "
          "sibling"),
      row("exec-cmd", 0, kNo, 0, R, kRef, "no command is run once the tree is restored"),
      row("new-pidns", 0, kNo, kOwn, R, kImpl,
          "restores the tree under a fresh pid namespace whose init is cryo's own (pid 1: it reaps "
          "orphans and ends as the tree's root does), with the tree at its recorded pids below it: "
          "one image restores any number of times side by side (sockets then need addresses of "
          "their own); the pid file gets the root's pid as seen here"),

      // check.
      row("feature", 0, kReq, 0, C, kImpl,
          "answers one of CRIU's feature names from cryo's own probes: exit 0 when present, 1 when absent "
          "or not probed by cryo; `list` names those cryo answers"),
      row("all", 0, kNo, 0, C, kAcc, "cryo check always lists every probe"),
      row("extra", 0, kNo, kNeg, C, kAcc, "cryo check always lists the optional features too"),
      row("experimental", 0, kNo, kNeg, C, kAcc, "cryo check always lists the optional features too"),
  };
}

}  // namespace

const std::vector<Option>& table() {
  static const std::vector<Option> kTable = make_table();
  return kTable;
}

}  // namespace cryo::cli::criu
