// Unit tests for storage/data_dir.h: claiming a data directory never writes
// through a symlink, writes the marker whole, and leaves a refused directory
// as it found it.

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "storage/data_dir.h"

namespace memkeep::storage {
namespace {

constexpr const char* kFormat = "memkeep test format 1";

class DataDirTest : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/memkeep-data-dir-test-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        root_ = pattern;
        dir_ = root_ / "data";
        target_ = root_ / "target";
    }
    void TearDown() override { fs::remove_all(root_); }

    static std::string read(const fs::path& path) {
        std::ifstream in(path);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }

    fs::path root_, dir_, target_;
};

TEST_F(DataDirTest, FreshDirectoryGetsTheWholeMarkerAndNoTempFile) {
    bool fresh = false;
    std::string error;
    int fd = claim_data_dir(dir_, kFormat, &fresh, &error);
    ASSERT_GE(fd, 0) << error;
    EXPECT_TRUE(fresh);
    EXPECT_EQ(read(dir_ / kDataDirMarker), std::string(kFormat) + "\n");
    EXPECT_FALSE(fs::exists(dir_ / "MEMKEEP_DATA.tmp"));
    ::close(fd);
    // The second claim finds the store.
    fd = claim_data_dir(dir_, kFormat, &fresh, &error);
    ASSERT_GE(fd, 0) << error;
    EXPECT_FALSE(fresh);
    ::close(fd);
}

TEST_F(DataDirTest, SecondClaimWhileLockedIsRefused) {
    bool fresh = false;
    std::string error;
    int fd = claim_data_dir(dir_, kFormat, &fresh, &error);
    ASSERT_GE(fd, 0) << error;
    EXPECT_EQ(claim_data_dir(dir_, kFormat, &fresh, &error), -1);
    EXPECT_NE(error.find("in use"), std::string::npos) << error;
    ::close(fd);
}

TEST_F(DataDirTest, SymlinkedLockFileIsRefusedAndItsTargetNotCreated) {
    fs::create_directories(dir_);
    fs::create_symlink(target_, dir_ / "memkeep.lock");
    bool fresh = false;
    std::string error;
    EXPECT_EQ(claim_data_dir(dir_, kFormat, &fresh, &error), -1);
    EXPECT_NE(error.find("lock file"), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(target_));
}

TEST_F(DataDirTest, SymlinkedMarkerIsNotAStore) {
    fs::create_directories(dir_);
    { std::ofstream(target_) << kFormat << "\n"; }
    fs::create_symlink(target_, dir_ / kDataDirMarker);
    bool fresh = false;
    std::string error;
    EXPECT_EQ(claim_data_dir(dir_, kFormat, &fresh, &error), -1);
    EXPECT_NE(error.find("not a memkeep store"), std::string::npos) << error;
    EXPECT_FALSE(fs::exists(dir_ / "memkeep.lock"));   // a refused directory is left as it was
}

TEST_F(DataDirTest, LeftoverTempMarkerSymlinkIsReplacedNotWrittenThrough) {
    // A crash (or an attacker) left MEMKEEP_DATA.tmp as a symlink to a file
    // outside the directory: the marker is written without touching it.
    fs::create_directories(dir_);
    { std::ofstream(target_) << "precious\n"; }
    fs::create_symlink(target_, dir_ / "MEMKEEP_DATA.tmp");
    bool fresh = false;
    std::string error;
    int fd = claim_data_dir(dir_, kFormat, &fresh, &error);
    ASSERT_GE(fd, 0) << error;
    EXPECT_TRUE(fresh);
    EXPECT_EQ(read(target_), "precious\n");
    EXPECT_EQ(read(dir_ / kDataDirMarker), std::string(kFormat) + "\n");
    EXPECT_FALSE(fs::is_symlink(dir_ / kDataDirMarker));
    ::close(fd);
}

}  // namespace
}  // namespace memkeep::storage
