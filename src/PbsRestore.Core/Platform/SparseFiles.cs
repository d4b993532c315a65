using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace PbsRestore.Platform;

/// <summary>
/// The one seam for OS-specific file behaviour. On Linux (ext4, xfs, btrfs, tmpfs) a file extended with
/// ftruncate is already sparse, so unwritten ranges are holes. On NTFS a file must be flagged with
/// FSCTL_SET_SPARSE before it is extended, or Windows allocates (and zero-fills) every skipped range.
/// </summary>
public static class SparseFiles
{
    /// <summary>Marks a freshly created file sparse where the OS needs it; returns whether holes are expected.</summary>
    public static bool PrepareSparse(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsWindows()) return true;
        return Windows.SetSparse(handle);
    }

    /// <summary>Whether an existing file keeps unwritten ranges as holes: always on Linux, on NTFS when flagged sparse.</summary>
    public static bool IsSparse(string path) => !OperatingSystem.IsWindows() || File.GetAttributes(path).HasFlag(FileAttributes.SparseFile);

    private static class Windows
    {
        // winioctl.h: CTL_CODE(FILE_DEVICE_FILE_SYSTEM, 49, METHOD_BUFFERED, FILE_SPECIAL_ACCESS)
        private const uint FSCTL_SET_SPARSE = 0x000900C4;

        [DllImport("kernel32.dll", SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        private static extern bool DeviceIoControl(SafeFileHandle device, uint ioControlCode, IntPtr inBuffer, uint inBufferSize,
            IntPtr outBuffer, uint outBufferSize, out uint bytesReturned, IntPtr overlapped);

        /// <summary>
        /// FSCTL_SET_SPARSE with no input buffer sets the flag (FILE_SET_SPARSE_BUFFER defaults to TRUE).
        /// File systems without sparse support (FAT32, some SMB shares) refuse it; the restore then still works,
        /// zero ranges are just allocated.
        /// </summary>
        public static bool SetSparse(SafeFileHandle handle)
        {
            if (DeviceIoControl(handle, FSCTL_SET_SPARSE, IntPtr.Zero, 0, IntPtr.Zero, 0, out _, IntPtr.Zero))
                return true;
            int error = Marshal.GetLastWin32Error();
            const int ERROR_INVALID_FUNCTION = 1, ERROR_NOT_SUPPORTED = 50;
            if (error is ERROR_INVALID_FUNCTION or ERROR_NOT_SUPPORTED) return false;
            throw new Win32Exception(error, "FSCTL_SET_SPARSE failed");
        }
    }
}
