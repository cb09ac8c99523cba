// vfio_iommufd_setup_test: a device's VFIO cdev bound to an iommufd and
// attached to an IOAS, and the orders of those steps that must fail, each
// with its exact errno. Raw ioctls on purpose: this is the uAPI under test.
#include "device.h"

#include "vfiolab/sysfs.h"
#include "vfiolab/unique_fd.h"

#include <fcntl.h>
#include <linux/iommufd.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace vfiolab {
namespace {

class vfio_iommufd_setup_test : public testing::Test {
 protected:
  void SetUp() override {
    const Bdf bdf = check(parse_bdf(harness::device_bdf()));
    auto cdev = check(Sysfs().vfio_cdev(bdf));
    if (!cdev) GTEST_SKIP() << bdf.str() << " has no VFIO cdev (kernel without CONFIG_VFIO_DEVICE_CDEV?)";
    cdev_path_ = "/dev/vfio/devices/" + *cdev;
    device_.reset(::open(cdev_path_.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(device_) << "open " << cdev_path_ << ": " << std::strerror(errno);
    iommufd_.reset(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
    if (!iommufd_ && errno == ENOENT) GTEST_SKIP() << "no /dev/iommu (kernel without CONFIG_IOMMUFD)";
    ASSERT_TRUE(iommufd_) << "open /dev/iommu: " << std::strerror(errno);
    iommu_ioas_alloc alloc{};
    alloc.size = sizeof(alloc);
    ASSERT_EQ(::ioctl(iommufd_.get(), IOMMU_IOAS_ALLOC, &alloc), 0) << std::strerror(errno);
    ioas_id_ = alloc.out_ioas_id;
  }

  // The ioctl's errno, or 0 on success.
  static int errno_of(int rc) { return rc == 0 ? 0 : errno; }

  int bind(int iommufd) {
    vfio_device_bind_iommufd bind{};
    bind.argsz = sizeof(bind);
    bind.iommufd = iommufd;
    return errno_of(::ioctl(device_.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind));
  }
  int attach(std::uint32_t pt_id) {
    vfio_device_attach_iommufd_pt attach{};
    attach.argsz = sizeof(attach);
    attach.pt_id = pt_id;
    return errno_of(::ioctl(device_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach));
  }
  int detach() {
    vfio_device_detach_iommufd_pt detach{};
    detach.argsz = sizeof(detach);
    return errno_of(::ioctl(device_.get(), VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach));
  }
  int get_info() {
    vfio_device_info info{};
    info.argsz = sizeof(info);
    return errno_of(::ioctl(device_.get(), VFIO_DEVICE_GET_INFO, &info));
  }

  std::string cdev_path_;
  UniqueFd device_;
  UniqueFd iommufd_;
  std::uint32_t ioas_id_ = 0;
};

TEST_F(vfio_iommufd_setup_test, bind) {
  EXPECT_EQ(bind(iommufd_.get()), 0);
  EXPECT_EQ(get_info(), 0);
}

TEST_F(vfio_iommufd_setup_test, get_info_without_bind_fails) { EXPECT_EQ(get_info(), EINVAL); }

TEST_F(vfio_iommufd_setup_test, bind_negative_iommufd_fails) { EXPECT_EQ(bind(-1), EINVAL); }

TEST_F(vfio_iommufd_setup_test, bind_fd_that_is_not_an_iommufd_fails) {
  UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(null);
  EXPECT_EQ(bind(null.get()), EBADFD);
}

TEST_F(vfio_iommufd_setup_test, bind_closed_fd_fails) {
  int unused = ::dup(iommufd_.get());
  ASSERT_GE(unused, 0);
  UniqueFd(unused).reset();  // closed: the number now names nothing
  EXPECT_EQ(bind(unused), EBADF);
}

TEST_F(vfio_iommufd_setup_test, repeated_bind_fails) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  EXPECT_EQ(bind(iommufd_.get()), EINVAL);
}

TEST_F(vfio_iommufd_setup_test, attach_detach_ioas) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  EXPECT_EQ(attach(ioas_id_), 0);
  EXPECT_EQ(detach(), 0);
  // And again: a detached device attaches anew.
  EXPECT_EQ(attach(ioas_id_), 0);
  EXPECT_EQ(detach(), 0);
}

TEST_F(vfio_iommufd_setup_test, attach_without_bind_fails) { EXPECT_EQ(attach(ioas_id_), EINVAL); }

TEST_F(vfio_iommufd_setup_test, attach_invalid_pt_id_fails) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  EXPECT_EQ(attach(UINT32_MAX), ENOENT);
}

TEST_F(vfio_iommufd_setup_test, detach_without_bind_fails) { EXPECT_EQ(detach(), EINVAL); }

TEST_F(vfio_iommufd_setup_test, detach_without_attach_is_harmless) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  // Nothing attached: the kernel has nothing to undo and says so by success.
  EXPECT_EQ(detach(), 0);
  EXPECT_EQ(attach(ioas_id_), 0);
}

TEST_F(vfio_iommufd_setup_test, iommufd_closed_before_device) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  ASSERT_EQ(attach(ioas_id_), 0);
  // The binding holds the iommufd context: closing its fd first must leave
  // the device usable, and closing the device afterwards must be clean.
  iommufd_.reset();
  EXPECT_EQ(get_info(), 0);
  device_.reset();
  UniqueFd reopened(::open(cdev_path_.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_TRUE(reopened) << "reopen " << cdev_path_ << ": " << std::strerror(errno);
}

TEST_F(vfio_iommufd_setup_test, device_reopened_after_close_binds_again) {
  ASSERT_EQ(bind(iommufd_.get()), 0);
  ASSERT_EQ(attach(ioas_id_), 0);
  device_.reset();  // closing the cdev unbinds the device
  device_.reset(::open(cdev_path_.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(device_) << std::strerror(errno);
  EXPECT_EQ(get_info(), EINVAL) << "a new open starts unbound";
  EXPECT_EQ(bind(iommufd_.get()), 0);
  EXPECT_EQ(attach(ioas_id_), 0);
}

}  // namespace
}  // namespace vfiolab
