pub fn add(a: u32, b: u32) -> u32 {
    return a + b;
}

#[test]
fn adds() {
    assert_eq!(add(1, 2), 3);
}
