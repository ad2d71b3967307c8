// Unit tests for tests/support/fault_injection_fs.h: the power-loss model and
// the fault injection, on plain files, without a database.

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "fault_injection_fs.h"

namespace memkeep::testing {
namespace {

namespace fs = std::filesystem;

class FaultInjectionFsTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = "/tmp/memkeep-fault-fs-unit-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code error;
        fs::remove_all(dir_, error);
    }

    std::string path(const std::string& name) const { return dir_ + "/" + name; }

    std::unique_ptr<rocksdb::FSWritableFile> create(const std::string& name) {
        std::unique_ptr<rocksdb::FSWritableFile> file;
        EXPECT_TRUE(disk_.NewWritableFile(path(name), rocksdb::FileOptions(), &file, nullptr).ok());
        return file;
    }
    rocksdb::IOStatus append(rocksdb::FSWritableFile& file, const std::string& data) {
        return file.Append(data, rocksdb::IOOptions(), nullptr);
    }
    rocksdb::IOStatus sync(rocksdb::FSWritableFile& file) { return file.Sync(rocksdb::IOOptions(), nullptr); }
    void close(rocksdb::FSWritableFile& file) { EXPECT_TRUE(file.Close(rocksdb::IOOptions(), nullptr).ok()); }
    void sync_directory() {
        std::unique_ptr<rocksdb::FSDirectory> directory;
        ASSERT_TRUE(disk_.NewDirectory(dir_, rocksdb::IOOptions(), &directory, nullptr).ok());
        ASSERT_TRUE(directory->Fsync(rocksdb::IOOptions(), nullptr).ok());
    }
    std::string content(const std::string& name) const {
        std::ifstream in(path(name), std::ios::binary);
        std::ostringstream out;
        out << in.rdbuf();
        return out.str();
    }
    bool exists(const std::string& name) const { return fs::exists(path(name)); }

    std::string dir_;
    FaultInjectionFs disk_;
};

TEST_F(FaultInjectionFsTest, PowerLossKeepsSyncedBytesAndDropsTheRest) {
    auto file = create("000001.log");
    sync_directory();
    ASSERT_TRUE(append(*file, "synced").ok());
    ASSERT_TRUE(sync(*file).ok());
    ASSERT_TRUE(append(*file, "-unsynced").ok());
    EXPECT_EQ(disk_.unsynced_bytes(FileClass::kWal), 9u);
    close(*file);
    EXPECT_EQ(content("000001.log"), "synced-unsynced");
    disk_.power_off();
    disk_.power_on(Loss::kUnsyncedData);
    EXPECT_EQ(content("000001.log"), "synced");
}

TEST_F(FaultInjectionFsTest, ProcessCrashKeepsEveryAppendedByte) {
    auto file = create("000001.log");
    ASSERT_TRUE(append(*file, "never synced").ok());
    close(*file);
    disk_.power_off();
    disk_.power_on(Loss::kNothing);
    EXPECT_EQ(content("000001.log"), "never synced");
}

TEST_F(FaultInjectionFsTest, AFileWhoseDirectoryWasNeverSyncedVanishes) {
    auto kept = create("000001.sst");
    ASSERT_TRUE(append(*kept, "table").ok());
    ASSERT_TRUE(sync(*kept).ok());
    close(*kept);
    sync_directory();
    auto lost = create("000002.sst");
    ASSERT_TRUE(append(*lost, "table").ok());
    ASSERT_TRUE(sync(*lost).ok());  // its data, not its name
    close(*lost);
    disk_.power_off();
    disk_.power_on(Loss::kUnsyncedData);
    EXPECT_EQ(content("000001.sst"), "table");
    EXPECT_FALSE(exists("000002.sst"));
}

TEST_F(FaultInjectionFsTest, ARenameOverAFileIsUndoneUntilTheDirectoryIsSynced) {
    {
        std::ofstream old(path("CURRENT"));
        old << "MANIFEST-000001\n";
    }
    auto temporary = create("000002.dbtmp");
    ASSERT_TRUE(append(*temporary, "MANIFEST-000002\n").ok());
    ASSERT_TRUE(sync(*temporary).ok());
    close(*temporary);
    ASSERT_TRUE(disk_.RenameFile(path("000002.dbtmp"), path("CURRENT"), rocksdb::IOOptions(), nullptr).ok());
    EXPECT_EQ(content("CURRENT"), "MANIFEST-000002\n");
    disk_.power_off();
    disk_.power_on(Loss::kUnsyncedData);
    EXPECT_EQ(content("CURRENT"), "MANIFEST-000001\n");

    temporary = create("000003.dbtmp");
    ASSERT_TRUE(append(*temporary, "MANIFEST-000003\n").ok());
    ASSERT_TRUE(sync(*temporary).ok());
    close(*temporary);
    ASSERT_TRUE(disk_.RenameFile(path("000003.dbtmp"), path("CURRENT"), rocksdb::IOOptions(), nullptr).ok());
    sync_directory();
    disk_.power_off();
    disk_.power_on(Loss::kUnsyncedData);
    EXPECT_EQ(content("CURRENT"), "MANIFEST-000003\n");
}

TEST_F(FaultInjectionFsTest, WhilePoweredOffNothingReachesTheDisk) {
    auto file = create("000001.log");
    sync_directory();
    ASSERT_TRUE(append(*file, "before").ok());
    ASSERT_TRUE(sync(*file).ok());
    disk_.power_off();
    EXPECT_TRUE(append(*file, "after").ok());
    EXPECT_TRUE(sync(*file).ok());
    auto created = create("000002.log");
    ASSERT_TRUE(created);
    EXPECT_TRUE(append(*created, "after").ok());
    EXPECT_TRUE(disk_.DeleteFile(path("000001.log"), rocksdb::IOOptions(), nullptr).ok());
    close(*file);
    disk_.power_on(Loss::kUnsyncedData);
    EXPECT_EQ(content("000001.log"), "before");
    EXPECT_FALSE(exists("000002.log"));
}

TEST_F(FaultInjectionFsTest, ArmedFaultFailsTheChosenCallsOfTheChosenFiles) {
    auto wal = create("000001.log");
    auto table = create("000002.sst");
    disk_.arm({FsCall::kAppend, FileClass::kWal, InjectedError::kNoSpace, /*after=*/2, /*times=*/1});
    EXPECT_TRUE(append(*table, "t").ok());  // another class of file
    EXPECT_TRUE(append(*wal, "1").ok());
    EXPECT_TRUE(append(*wal, "2").ok());
    rocksdb::IOStatus third = append(*wal, "3");
    EXPECT_TRUE(third.IsNoSpace()) << third.ToString();
    EXPECT_TRUE(third.GetRetryable());
    EXPECT_TRUE(append(*wal, "4").ok());
    EXPECT_EQ(disk_.injected(), 1u);
    close(*wal);
    EXPECT_EQ(content("000001.log"), "124");  // the failed append wrote nothing

    disk_.arm({FsCall::kSync, FileClass::kAny, InjectedError::kIoError});
    auto other = create("000003.log");
    ASSERT_TRUE(append(*other, "x").ok());
    rocksdb::IOStatus failed_sync = sync(*other);
    EXPECT_TRUE(failed_sync.IsIOError() && !failed_sync.IsNoSpace()) << failed_sync.ToString();
    EXPECT_FALSE(sync(*other).ok());  // every call until disarmed
    // A failed sync made nothing durable ("124" of the first log was never synced).
    EXPECT_EQ(disk_.unsynced_bytes(FileClass::kWal), 3u + 1u);
    disk_.disarm();
    EXPECT_TRUE(sync(*other).ok());
    EXPECT_EQ(disk_.unsynced_bytes(FileClass::kWal), 3u);
    close(*other);
    close(*table);

    disk_.arm({FsCall::kCreate, FileClass::kWal, InjectedError::kNoSpace});
    std::unique_ptr<rocksdb::FSWritableFile> refused;
    EXPECT_TRUE(disk_.NewWritableFile(path("000004.log"), rocksdb::FileOptions(), &refused, nullptr).IsNoSpace());
    EXPECT_FALSE(exists("000004.log"));
    disk_.arm({FsCall::kRename, FileClass::kCurrent, InjectedError::kIoError});
    EXPECT_FALSE(disk_.RenameFile(path("000003.log"), path("CURRENT"), rocksdb::IOOptions(), nullptr).ok());
    EXPECT_TRUE(exists("000003.log"));
    EXPECT_EQ(disk_.calls(FsCall::kRename, FileClass::kCurrent), 1u);
}

TEST(FileClassTest, RocksDbFileNames) {
    EXPECT_EQ(classify_file("/d/000012.log"), FileClass::kWal);
    EXPECT_EQ(classify_file("/d/000013.sst"), FileClass::kTable);
    EXPECT_EQ(classify_file("/d/MANIFEST-000005"), FileClass::kManifest);
    EXPECT_EQ(classify_file("/d/CURRENT"), FileClass::kCurrent);
    EXPECT_EQ(classify_file("/d/000006.dbtmp"), FileClass::kCurrent);
    EXPECT_EQ(classify_file("/d/OPTIONS-000007"), FileClass::kOptions);
    EXPECT_EQ(classify_file("/d/OPTIONS-000007.dbtmp"), FileClass::kOptions);
    EXPECT_EQ(classify_file("/d/IDENTITY"), FileClass::kOther);
}

}  // namespace
}  // namespace memkeep::testing
