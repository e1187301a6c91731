//! placeholder
#[derive(Debug)]
pub enum BusError {}
pub struct MmioBus;
