//! sgmirror's kernel programs, one pair per link: `sgm_xdp_in` enforces the
//! interface's inbound security-group rules at XDP, `sgm_tc_out` its outbound rules
//! at TC (TCX or clsact). Both judge with the same code and share the link's flow
//! table, so either side's allowed first packet admits the replies on the other.
//! What they do not allow they count, and report to the drop log (`droplog`).
#![no_std]
#![no_main]

mod droplog;
mod flow;
mod judge;
mod maps;
mod parse;

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use sgmirror_common::direction;

use crate::{
    judge::{judge, settle},
    parse::{Frame, Parsed},
};

/// Bytes of an outbound packet made directly readable before parsing: every header
/// the program reads lies within them unless the packet has an unusually long IPv6
/// extension-header chain (then it is `malformed`). Most packets have them linear
/// already, and then nothing is pulled.
const TC_PULL_LEN: u32 = 512;

#[xdp]
pub fn sgm_xdp_in(ctx: XdpContext) -> u32 {
    let frame = Frame::linear(ctx.data(), ctx.data_end());
    let mut p = Parsed::new();
    let j = judge(&frame, direction::INGRESS, &mut p);
    if settle(&p, direction::INGRESS, j, frame.len()) { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
}

/// Passes with `TC_ACT_UNSPEC` ("next"), not `TC_ACT_OK`: with TCX and with several
/// clsact filters, the programs after this one still run; with none, the packet is
/// sent.
#[classifier]
pub fn sgm_tc_out(ctx: TcContext) -> i32 {
    let len = ctx.len();
    let want = if len < TC_PULL_LEN { len } else { TC_PULL_LEN };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        // On failure the packet is parsed as far as it is readable.
        let _ = ctx.pull_data(want);
    }
    let frame = Frame { start: ctx.data(), end: ctx.data_end(), len: len as usize };
    let mut p = Parsed::new();
    let j = judge(&frame, direction::EGRESS, &mut p);
    if settle(&p, direction::EGRESS, j, u64::from(len)) { TC_ACT_UNSPEC } else { TC_ACT_SHOT as i32 }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
