//! Mail as data: parsing inbound messages, composing outbound ones, and the pure judgements
//! about them (address normalisation, loop detection, quote stripping).

pub mod address;
pub mod compose;
pub mod html;
pub mod loops;
pub mod parse;
pub mod quote;
pub mod words;
