//! Bot bundles and the dialog engine.
//!
//! - [`bundle`]: the bundle format `understudy-bundle/1` (docs/bundle-format.md);
//!   [`bundle_file`] reads one with clear errors, and [`validate`] says what
//!   makes one unusable.
//! - [`Bot`]: a bundle compiled for one language, shared by every call;
//!   [`Conversation`]: one call's dialog state; [`Bot::respond`] runs a turn.
//! - Recognition ([`recognize`]) goes rules -> embeddings -> LLM (grammar-
//!   constrained); [`slots`] extracts values deterministically first; [`flow`]
//!   moves through states; [`knowledge`] answers from the bundle's facts and
//!   [`guard`] refuses answers those facts do not support; [`confirm`] asks
//!   when recognition is unsure and reads "the second one" after a menu.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use understudy::dialog::{Bot, Bundle, Nlu, UserInput};
//! let bot = Bot::load(Bundle::demo(), Nlu::default()).await?;
//! let (mut conv, greeting) = bot.start();
//! println!("{}", greeting.text());
//! let turn = bot.respond(&mut conv, UserInput::Text("where is my order".into())).await?;
//! println!("{} -> {:?}", turn.text(), turn.action);
//! # Ok(()) }
//! ```

mod bot;
pub mod bundle;
pub mod bundle_file;
pub mod confirm;
pub mod flow;
pub mod guard;
pub mod knowledge;
pub mod recognize;
pub mod resume;
pub mod slots;
pub mod template;
pub mod testing;
pub mod text;
mod turn;
pub mod validate;

pub use bot::{Bot, BotError, Nlu};
pub use bundle::{Bundle, FORMAT_V1};
pub use bundle_file::BundleError;
pub use flow::Conversation;
pub use resume::{Located, Place, Placement};
pub use turn::{
    Action, BotTurn, DialogTimings, ListenHints, MatchSource, TransferReason, TurnOutcome,
    UserInput,
};
pub use validate::{Issue, Severity};
