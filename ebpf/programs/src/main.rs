//! sgmirror's kernel programs: `sgm_xdp_in` enforces an interface's inbound
//! security-group rules at XDP.
#![no_std]
#![no_main]

mod judge;
mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sgmirror_common::direction;

use crate::{
    judge::{judge, settle},
    parse::Frame,
};

#[xdp]
pub fn sgm_xdp_in(ctx: XdpContext) -> u32 {
    let frame = Frame { start: ctx.data(), end: ctx.data_end() };
    let (allowed, why) = judge(&frame, direction::INGRESS);
    if settle(direction::INGRESS, allowed, why, frame.len()) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
