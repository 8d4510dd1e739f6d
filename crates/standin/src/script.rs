//! Per-device-token scripts: which answers a stand-in gives, in order, to one token.

use std::collections::VecDeque;

/// Answers for one device token: `first` in turn, one per request, then `then` for good.
/// Build one from an answer (`Answer::Unregistered` answers that forever), or with
/// `answer.times(n)` / `answer.once()` (that answer n times, then success), or
/// [`Script::sequence`].
#[derive(Clone, Debug)]
pub struct Script<A> {
    first: VecDeque<A>,
    then: A,
}

impl<A: Clone + Default> Script<A> {
    /// `answers` in turn, then success.
    pub fn sequence(answers: impl IntoIterator<Item = A>) -> Self {
        Script {
            first: answers.into_iter().collect(),
            then: A::default(),
        }
    }

    /// `answer`, `n` times, then success.
    pub fn times(answer: A, n: usize) -> Self {
        Script::sequence(std::iter::repeat_n(answer, n))
    }

    /// What to answer once the sequence is used up (success unless changed here).
    pub fn then(mut self, answer: A) -> Self {
        self.then = answer;
        self
    }

    pub(crate) fn always(answer: A) -> Self {
        Script {
            first: VecDeque::new(),
            then: answer,
        }
    }

    /// The answer for the next request, consuming one step.
    pub(crate) fn next(&mut self) -> A {
        self.first.pop_front().unwrap_or_else(|| self.then.clone())
    }
}

/// `times`, `once` and `after` on a stand-in's `Answer` type, which must have a
/// `Delayed(Duration, Box<Answer>)` variant, and an `Answer` as a script that answers it forever.
macro_rules! scripted_answer {
    ($answer:ident) => {
        impl $answer {
            /// This answer `n` times, then success.
            pub fn times(self, n: usize) -> $crate::script::Script<$answer> {
                $crate::script::Script::times(self, n)
            }

            /// This answer once, then success.
            pub fn once(self) -> $crate::script::Script<$answer> {
                $crate::script::Script::times(self, 1)
            }

            /// This answer, given after `delay`.
            pub fn after(self, delay: std::time::Duration) -> $answer {
                $answer::Delayed(delay, Box::new(self))
            }
        }

        impl From<$answer> for $crate::script::Script<$answer> {
            fn from(answer: $answer) -> Self {
                $crate::script::Script::always(answer)
            }
        }
    };
}
pub(crate) use scripted_answer;
