#include "controlplane-lite/sqlite_store.h"

#include "api/log.h"
#include "controlplane-lite/watch_hub.h"

#include <sqlite3.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

namespace ferry::cp {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  id INTEGER PRIMARY KEY CHECK (id = 0),
  revision INTEGER NOT NULL,   -- revision of the newest write
  compacted INTEGER NOT NULL   -- log rows up to this revision are gone
);
INSERT OR IGNORE INTO meta VALUES (0, 0, 0);
CREATE TABLE IF NOT EXISTS kv(
  key BLOB PRIMARY KEY,
  value BLOB NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log(
  rev INTEGER PRIMARY KEY,     -- one row per revision
  key BLOB NOT NULL,
  value BLOB NOT NULL,         -- for a deletion: the value it removed
  deleted INTEGER NOT NULL,
  create_rev INTEGER NOT NULL
);
)sql";

// Smallest key greater than every key starting with `prefix`; empty when none is.
std::string prefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto last = static_cast<unsigned char>(prefix.back());
    if (last < 0xff) {
      prefix.back() = static_cast<char>(last + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return {};
}

// One connection, used by one thread at a time, with its prepared statements cached.
class Connection {
 public:
  ~Connection() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    if (db_) sqlite3_close_v2(db_);
  }

  static Result<std::unique_ptr<Connection>> open(const std::string& path) {
    auto conn = std::make_unique<Connection>();
    int rc = sqlite3_open_v2(path.c_str(), &conn->db_,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = conn->db_ ? sqlite3_errmsg(conn->db_) : sqlite3_errstr(rc);
      return fail(EIO, "open " + path + ": " + message);
    }
    sqlite3_extended_result_codes(conn->db_, 1);
    // Readers never wait for the writer in WAL mode; this only covers checkpoints and schema setup.
    sqlite3_busy_timeout(conn->db_, 10000);
    return conn;
  }

  Status exec(const std::string& sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error ? error : sqlite3_errmsg(db_);
      sqlite3_free(error);
      return fail(EIO, message);
    }
    return {};
  }

  // A cached statement, reset and unbound when the returned guard goes away.
  class Statement {
   public:
    explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
    ~Statement() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    Statement(const Statement&) = delete;

    Statement& bind(int index, std::int64_t value) {
      sqlite3_bind_int64(stmt_, index, value);
      return *this;
    }
    Statement& bindBlob(int index, const std::string& value) {
      // Keys compare bytewise as BLOBs; never bind them as TEXT (TEXT sorts before BLOB).
      sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_STATIC);
      return *this;
    }
    // true: a row is available; false: done.
    Result<bool> step() {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return fail(EIO, sqlite3_errmsg(sqlite3_db_handle(stmt_)));
    }
    Status run() {
      auto row = step();
      if (!row) return fail(row.error());
      return {};
    }
    std::int64_t integer(int column) { return sqlite3_column_int64(stmt_, column); }
    std::string blob(int column) {
      auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
      return data ? std::string(data, sqlite3_column_bytes(stmt_, column)) : std::string();
    }

   private:
    sqlite3_stmt* stmt_;
  };

  Result<std::unique_ptr<Statement>> prepare(const char* sql) {
    auto& stmt = statements_[sql];
    if (!stmt && sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return fail(EIO, fmt::format("prepare {}: {}", sql, sqlite3_errmsg(db_)));
    }
    return std::make_unique<Statement>(stmt);
  }

 private:
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

using Statement = Connection::Statement;

// Prepares (or reuses) `sql` on `conn` as `var`; returns the failure from the enclosing function.
#define FERRY_PREPARE(var, conn, sql)                 \
  auto var##_result = (conn).prepare(sql);            \
  if (!var##_result) return fail(var##_result.error()); \
  Statement& var = **var##_result

// A read transaction on a pooled connection: a consistent snapshot for list and replay.
class ReadTransaction {
 public:
  ReadTransaction(Connection& conn) : conn_(conn) {}
  ~ReadTransaction() {
    if (open_) (void)conn_.exec("COMMIT");
  }
  Status begin() {
    if (auto ok = conn_.exec("BEGIN"); !ok) return ok;
    open_ = true;
    return {};
  }

 private:
  Connection& conn_;
  bool open_ = false;
};

}  // namespace

struct WriteOp {
  enum class Kind { Create, Update, Remove, Compact };
  Kind kind = Kind::Create;
  std::string key;
  std::string value;
  std::int64_t expectedRevision = 0;  // Compact: the revision to compact to
  DecodedValue decoded;               // create/update: called with the revision for the watch event
  Result<std::int64_t> result = fail(EIO, "not run");
  bool done = false;  // under writeMutex
  // The submitting thread's own condition variable. Shared so that the leader can wake
  // the writers it served after releasing writeMutex (a writer woken while the leader
  // still holds it only blocks again on the mutex: two context switches per write) even
  // though a served writer may return, and its thread end, before the leader's notify.
  std::shared_ptr<std::condition_variable> wake = threadWake();

  static const std::shared_ptr<std::condition_variable>& threadWake() {
    thread_local auto cv = std::make_shared<std::condition_variable>();
    return cv;
  }
};

struct SqliteStore::Impl {
  std::string path;
  SqliteStoreOptions options;

  // The writer: one connection, used by whichever thread is the group-commit leader.
  std::unique_ptr<Connection> writer;
  std::mutex writeMutex;
  std::vector<WriteOp*> pending;
  bool leaderActive = false;
  std::int64_t revision = 0;  // the leader's view; committed is the readers' view
  std::atomic<std::int64_t> committed{0};

  // Readers: pooled connections, one per concurrent reader.
  std::mutex readersMutex;
  std::vector<std::unique_ptr<Connection>> idleReaders;

  std::shared_ptr<WatchHub> hub;
  std::unique_ptr<Connection> replayReader;  // used by the hub's delivery thread only
  std::unique_ptr<Connection> checkpointer;  // used by the maintenance thread only

  std::thread compactor;
  std::mutex compactorMutex;
  std::condition_variable compactorWake;
  bool stopping = false;

  // ---- readers

  class PooledReader {
   public:
    PooledReader(Impl& impl, std::unique_ptr<Connection> conn) : impl_(impl), conn_(std::move(conn)) {}
    PooledReader(PooledReader&&) = default;
    ~PooledReader() {
      if (!conn_) return;
      std::lock_guard lock(impl_.readersMutex);
      impl_.idleReaders.push_back(std::move(conn_));
    }
    Connection& operator*() { return *conn_; }

   private:
    Impl& impl_;
    std::unique_ptr<Connection> conn_;
  };

  Result<std::unique_ptr<Connection>> openReader() {
    auto conn = Connection::open(path);
    if (!conn) return conn;
    if (auto ok = (*conn)->exec("PRAGMA query_only=ON"); !ok) return fail(ok.error());
    return conn;
  }

  Result<PooledReader> reader() {
    {
      std::lock_guard lock(readersMutex);
      if (!idleReaders.empty()) {
        auto conn = std::move(idleReaders.back());
        idleReaders.pop_back();
        return PooledReader(*this, std::move(conn));
      }
    }
    auto conn = openReader();
    if (!conn) return fail(conn.error());
    return PooledReader(*this, std::move(*conn));
  }

  // ---- writes

  // Group commit. Each writer waits on its own condition variable, so a commit
  // wakes exactly the writers it served plus the one that leads the next batch.
  Result<std::int64_t> submit(WriteOp& op) {
    std::unique_lock lock(writeMutex);
    pending.push_back(&op);
    while (!op.done) {
      if (leaderActive) {
        op.wake->wait(lock);
        continue;
      }
      leaderActive = true;
      std::vector<WriteOp*> batch;
      batch.swap(pending);
      lock.unlock();
      std::vector<StoreEvent> events;
      runBatch(batch, events);
      lock.lock();
      // Still under writeMutex: batches reach the hub in commit order.
      if (!events.empty()) committed = events.back().kv.modRevision;
      hub->publish(std::move(events));
      leaderActive = false;
      std::vector<std::shared_ptr<std::condition_variable>> wakes;
      wakes.reserve(batch.size());
      for (auto* served : batch) {
        served->done = true;
        if (served != &op) wakes.push_back(served->wake);
      }
      if (!pending.empty()) wakes.push_back(pending.front()->wake);  // the next leader
      lock.unlock();
      for (auto& wake : wakes) wake->notify_one();
      return std::move(op.result);  // the leader served its own op in this batch
    }
    return std::move(op.result);
  }

  void runBatch(std::vector<WriteOp*>& batch, std::vector<StoreEvent>& events) {
    std::int64_t startRevision = revision;
    if (auto ok = runBatchTransaction(batch, events); !ok) {
      (void)writer->exec("ROLLBACK");
      revision = startRevision;
      events.clear();
      for (auto* op : batch) op->result = fail(ok.error().wrap("store write"));
    }
  }

  Status runBatchTransaction(std::vector<WriteOp*>& batch, std::vector<StoreEvent>& events) {
    if (auto ok = writer->exec("BEGIN IMMEDIATE"); !ok) return ok;
    for (auto* op : batch) {
      if (auto ok = apply(*op, events); !ok) return ok;
    }
    FERRY_PREPARE(bump, *writer, "UPDATE meta SET revision = ?1 WHERE id = 0");
    if (auto ok = bump.bind(1, revision).run(); !ok) return ok;
    return writer->exec("COMMIT");
  }

  // Applies one operation inside the leader's transaction. A refused operation
  // (missing key, revision mismatch) sets op.result and returns success: only a
  // database failure aborts the batch.
  Status apply(WriteOp& op, std::vector<StoreEvent>& events) {
    if (op.kind == WriteOp::Kind::Compact) return applyCompact(op);

    std::optional<KeyValue> current;
    {
      FERRY_PREPARE(select, *writer, "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1");
      select.bindBlob(1, op.key);
      auto row = select.step();
      if (!row) return fail(row.error());
      if (*row) current = KeyValue{op.key, select.blob(0), select.integer(1), select.integer(2)};
    }
    if (op.kind == WriteOp::Kind::Create && current) {
      op.result = fail(EEXIST, "create " + op.key + ": already exists");
      return {};
    }
    if (op.kind != WriteOp::Kind::Create) {
      const char* verb = op.kind == WriteOp::Kind::Update ? "update " : "delete ";
      if (!current) {
        op.result = fail(ENOENT, verb + op.key + ": not found");
        return {};
      }
      if (op.expectedRevision != 0 && op.expectedRevision != current->modRevision) {
        op.result = fail(ECANCELED, fmt::format("{}{}: revision is {}, not {}", verb, op.key,
                                                current->modRevision, op.expectedRevision));
        return {};
      }
    }

    std::int64_t rev = revision + 1;
    StoreEvent event;
    event.kv.key = op.key;
    event.kv.modRevision = rev;
    if (op.kind == WriteOp::Kind::Create) {
      FERRY_PREPARE(insert, *writer, "INSERT INTO kv(key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)");
      if (auto ok = insert.bindBlob(1, op.key).bindBlob(2, op.value).bind(3, rev).run(); !ok) return ok;
      event.created = true;
      event.kv.createRevision = rev;
      event.kv.value = std::move(op.value);
    } else if (op.kind == WriteOp::Kind::Update) {
      FERRY_PREPARE(change, *writer, "UPDATE kv SET value = ?2, mod_rev = ?3 WHERE key = ?1");
      if (auto ok = change.bindBlob(1, op.key).bindBlob(2, op.value).bind(3, rev).run(); !ok) return ok;
      event.kv.createRevision = current->createRevision;
      event.kv.value = std::move(op.value);
    } else {
      FERRY_PREPARE(erase, *writer, "DELETE FROM kv WHERE key = ?1");
      if (auto ok = erase.bindBlob(1, op.key).run(); !ok) return ok;
      event.type = StoreEvent::Type::Delete;
      event.kv.createRevision = current->createRevision;
      event.kv.value = std::move(current->value);
    }
    FERRY_PREPARE(logged, *writer,
                  "INSERT INTO log(rev, key, value, deleted, create_rev) VALUES (?1, ?2, ?3, ?4, ?5)");
    logged.bind(1, rev).bindBlob(2, event.kv.key).bindBlob(3, event.kv.value);
    logged.bind(4, event.type == StoreEvent::Type::Delete ? 1 : 0).bind(5, event.kv.createRevision);
    if (auto ok = logged.run(); !ok) return ok;
    if (op.decoded) event.object = op.decoded(rev);
    revision = rev;
    op.result = rev;
    events.push_back(std::move(event));
    return {};
  }

  Status applyCompact(WriteOp& op) {
    FERRY_PREPARE(erase, *writer, "DELETE FROM log WHERE rev <= ?1");
    if (auto ok = erase.bind(1, op.expectedRevision).run(); !ok) return ok;
    FERRY_PREPARE(mark, *writer, "UPDATE meta SET compacted = max(compacted, ?1) WHERE id = 0");
    if (auto ok = mark.bind(1, op.expectedRevision).run(); !ok) return ok;
    op.result = op.expectedRevision;
    return {};
  }

  // ---- history

  Result<std::int64_t> replay(const std::string& prefix, std::int64_t afterRevision, const WatchHub::Emit& emit) {
    ReadTransaction txn(*replayReader);
    if (auto ok = txn.begin(); !ok) return fail(ok.error().wrap("replay"));
    std::int64_t readAt = 0;
    std::int64_t compacted = 0;
    {
      FERRY_PREPARE(meta, *replayReader, "SELECT revision, compacted FROM meta WHERE id = 0");
      auto row = meta.step();
      if (!row) return fail(row.error().wrap("replay"));
      readAt = meta.integer(0);
      compacted = meta.integer(1);
    }
    if (afterRevision < compacted) {
      return fail(ERANGE, fmt::format("watch {} from revision {}: history before revision {} is compacted",
                                      prefix, afterRevision, compacted + 1));
    }
    FERRY_PREPARE(rows, *replayReader,
                  "SELECT rev, key, value, deleted, create_rev FROM log WHERE rev > ?1 ORDER BY rev");
    rows.bind(1, afterRevision);
    while (true) {
      auto row = rows.step();
      if (!row) return fail(row.error().wrap("replay"));
      if (!*row) break;
      std::string key = rows.blob(1);
      if (!key.starts_with(prefix)) continue;
      StoreEvent event;
      event.kv.key = std::move(key);
      event.kv.value = rows.blob(2);
      event.kv.modRevision = rows.integer(0);
      event.kv.createRevision = rows.integer(4);
      event.type = rows.integer(3) ? StoreEvent::Type::Delete : StoreEvent::Type::Put;
      event.created = event.type == StoreEvent::Type::Put && event.kv.createRevision == event.kv.modRevision;
      emit(event);
    }
    return readAt;
  }

  // Compacts in steps so that no single transaction holds the writers up for long.
  Status compactTo(std::int64_t wanted) {
    constexpr std::int64_t kStep = 5000;
    std::int64_t target = std::min(hub->beginCompaction(wanted), committed.load());
    std::int64_t done = hub->compactedRevision();
    while (done < target) {
      WriteOp op;
      op.kind = WriteOp::Kind::Compact;
      op.expectedRevision = std::min(target, done + kStep);
      auto result = submit(op);
      if (!result) {
        hub->endCompaction(done);
        return fail(result.error().wrap("compact"));
      }
      done = op.expectedRevision;
    }
    hub->endCompaction(done);
    return {};
  }

  // Background work, off the commit path: WAL checkpoints (the writer's own
  // autocheckpoint would stall a whole batch of writers) and history compaction.
  // Records (time, revision) samples so that the age bound needs no timestamp column.
  void runMaintenance() {
    std::deque<std::pair<std::chrono::steady_clock::time_point, std::int64_t>> samples;
    auto nextCompaction = std::chrono::steady_clock::now() + options.compactionInterval;
    std::int64_t checkpointedAt = -1;
    std::unique_lock lock(compactorMutex);
    while (!stopping) {
      compactorWake.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping; });
      if (stopping) break;
      lock.unlock();
      if (std::int64_t current = committed.load(); current != checkpointedAt) {
        // PASSIVE: copies what it can without blocking the writer or readers.
        if (auto ok = checkpointer->exec("PRAGMA wal_checkpoint(PASSIVE)"); !ok) {
          log::warn("sqlite store {}: checkpoint: {}", path, ok.error().message);
        }
        checkpointedAt = current;
      }
      auto now = std::chrono::steady_clock::now();
      if (now >= nextCompaction) {
        nextCompaction = now + options.compactionInterval;
        std::int64_t current = committed.load();
        samples.emplace_back(now, current);
        // The newest revision that is older than historyAge.
        std::int64_t agedOut = 0;
        while (!samples.empty() && now - samples.front().first >= options.historyAge) {
          agedOut = samples.front().second;
          samples.pop_front();
        }
        if (agedOut > 0) samples.emplace_front(now - options.historyAge, agedOut);
        std::int64_t target = std::min(agedOut, current - options.historyRevisions);
        if (target > hub->compactedRevision()) {
          if (auto ok = compactTo(target); !ok) log::warn("sqlite store {}: {}", path, ok.error().message);
        }
      }
      lock.lock();
    }
  }
};

SqliteStore::SqliteStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lock(impl_->compactorMutex);
    impl_->stopping = true;
  }
  impl_->compactorWake.notify_all();
  if (impl_->compactor.joinable()) impl_->compactor.join();
  impl_->hub->stop();
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path, SqliteStoreOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;
  // The database holds Secrets: owner-only. SQLite gives the -wal and -shm files
  // the main file's mode, so creating it first is enough.
  if (int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); fd >= 0) {
    ::close(fd);
  } else {
    return failErrno("sqlite store: create " + path);
  }
  auto writer = Connection::open(path);
  if (!writer) return fail(writer.error().wrap("sqlite store"));
  impl->writer = std::move(*writer);
  // Checkpoints run on the maintenance thread; the writer's autocheckpoint only
  // remains as a bound on the WAL should that thread fall behind.
  std::string pragmas = fmt::format(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous={}; PRAGMA wal_autocheckpoint=20000; "
      "PRAGMA journal_size_limit=67108864;",
      options.fsyncEveryCommit ? "FULL" : "NORMAL");
  if (auto ok = impl->writer->exec(pragmas); !ok) return fail(ok.error().wrap("sqlite store " + path));
  if (auto ok = impl->writer->exec(kSchema); !ok) return fail(ok.error().wrap("sqlite store " + path + ": schema"));

  std::int64_t compacted = 0;
  {
    auto meta = impl->writer->prepare("SELECT revision, compacted FROM meta WHERE id = 0");
    if (!meta) return fail(meta.error().wrap("sqlite store " + path));
    auto row = (*meta)->step();
    if (!row || !*row) return fail(EIO, "sqlite store " + path + ": meta row missing");
    impl->revision = (*meta)->integer(0);
    compacted = (*meta)->integer(1);
  }
  impl->committed = impl->revision;

  auto replayReader = impl->openReader();
  if (!replayReader) return fail(replayReader.error().wrap("sqlite store " + path));
  impl->replayReader = std::move(*replayReader);
  auto checkpointer = Connection::open(path);
  if (!checkpointer) return fail(checkpointer.error().wrap("sqlite store " + path));
  impl->checkpointer = std::move(*checkpointer);
  if (auto ok = impl->checkpointer->exec(fmt::format("PRAGMA synchronous={}", options.fsyncEveryCommit ? "FULL" : "NORMAL"));
      !ok) {
    return fail(ok.error().wrap("sqlite store " + path));
  }

  Impl* raw = impl.get();
  impl->hub = std::make_shared<WatchHub>(
      [raw](const std::string& prefix, std::int64_t after, const WatchHub::Emit& emit) {
        return raw->replay(prefix, after, emit);
      },
      impl->revision, compacted);
  impl->hub->start();
  impl->compactor = std::thread([raw] { raw->runMaintenance(); });
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(impl)));
}

Result<std::int64_t> SqliteStore::create(const std::string& key, const std::string& value, DecodedValue decoded) {
  if (key.empty()) return fail(EINVAL, "create: empty key");
  WriteOp op;
  op.kind = WriteOp::Kind::Create;
  op.key = key;
  op.value = value;
  op.decoded = std::move(decoded);
  return impl_->submit(op);
}

Result<std::int64_t> SqliteStore::update(const std::string& key, const std::string& value,
                                         std::int64_t expectedRevision, DecodedValue decoded) {
  if (key.empty()) return fail(EINVAL, "update: empty key");
  WriteOp op;
  op.kind = WriteOp::Kind::Update;
  op.key = key;
  op.value = value;
  op.expectedRevision = expectedRevision;
  op.decoded = std::move(decoded);
  return impl_->submit(op);
}

Result<std::int64_t> SqliteStore::remove(const std::string& key, std::int64_t expectedRevision) {
  if (key.empty()) return fail(EINVAL, "delete: empty key");
  WriteOp op;
  op.kind = WriteOp::Kind::Remove;
  op.key = key;
  op.expectedRevision = expectedRevision;
  return impl_->submit(op);
}

Result<KeyValue> SqliteStore::get(const std::string& key) {
  auto reader = impl_->reader();
  if (!reader) return fail(reader.error().wrap("get " + key));
  Connection& conn = **reader;
  FERRY_PREPARE(select, conn, "SELECT value, create_rev, mod_rev FROM kv WHERE key = ?1");
  select.bindBlob(1, key);
  auto row = select.step();
  if (!row) return fail(row.error().wrap("get " + key));
  if (!*row) return fail(ENOENT, "get " + key + ": not found");
  return KeyValue{key, select.blob(0), select.integer(1), select.integer(2)};
}

Result<ListPage> SqliteStore::list(const std::string& prefix, const std::string& startAfter, std::int64_t limit) {
  auto reader = impl_->reader();
  if (!reader) return fail(reader.error().wrap("list " + prefix));
  Connection& conn = **reader;
  ReadTransaction txn(conn);
  if (auto ok = txn.begin(); !ok) return fail(ok.error().wrap("list " + prefix));
  ListPage page;
  {
    FERRY_PREPARE(meta, conn, "SELECT revision FROM meta WHERE id = 0");
    auto row = meta.step();
    if (!row) return fail(row.error().wrap("list " + prefix));
    page.revision = meta.integer(0);
  }
  std::string end = prefixEnd(prefix);
  // Two statements so that SQLite uses the key index for both bounds.
  const char* sql = end.empty()
      ? "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ?1 AND key > ?2 ORDER BY key LIMIT ?3"
      : "SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ?1 AND key > ?2 AND key < ?4 "
        "ORDER BY key LIMIT ?3";
  FERRY_PREPARE(select, conn, sql);
  select.bindBlob(1, prefix).bindBlob(2, startAfter).bind(3, limit > 0 ? limit + 1 : -1);
  if (!end.empty()) select.bindBlob(4, end);
  while (true) {
    auto row = select.step();
    if (!row) return fail(row.error().wrap("list " + prefix));
    if (!*row) break;
    if (limit > 0 && static_cast<std::int64_t>(page.items.size()) == limit) {
      page.more = true;
      break;
    }
    page.items.push_back(KeyValue{select.blob(0), select.blob(1), select.integer(2), select.integer(3)});
  }
  return page;
}

Result<std::unique_ptr<StoreWatch>> SqliteStore::watch(const std::string& prefix, std::int64_t afterRevision,
                                                       std::function<void(const StoreEvent&)> sink) {
  return impl_->hub->add(prefix, afterRevision, std::move(sink));
}

Result<std::int64_t> SqliteStore::currentRevision() { return impl_->committed.load(); }

Status SqliteStore::compact(std::int64_t revision) { return impl_->compactTo(revision); }

std::int64_t SqliteStore::compactedRevision() const { return impl_->hub->compactedRevision(); }

}  // namespace ferry::cp
