//! What the bootloader tells us: the Multiboot2 information and the command line,
//! turned into plain Rust values. No `multiboot2` type leaves this module.

pub mod cmdline;
pub mod info;

pub use cmdline::{BootMode, CommandLine};
pub use info::{
    BootInfo, BootInfoError, ChannelLayout, Firmware, FramebufferInfo, FramebufferKind, MemoryKind,
    MemoryRegion, Module,
};

/// The value GRUB leaves in EAX for a Multiboot2 kernel.
pub const MULTIBOOT2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// The magic at the start of our Multiboot2 header.
pub const MULTIBOOT2_HEADER_MAGIC: u32 = 0xE852_50D6;
/// Size of the buffer the boot stub copies the boot information into.
pub const BOOT_INFO_MAX: usize = 64 * 1024;
