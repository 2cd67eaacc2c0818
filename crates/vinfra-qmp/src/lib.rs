//! A small async QMP (QEMU Machine Protocol) client.
