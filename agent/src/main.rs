mod image;

fn main() {}
