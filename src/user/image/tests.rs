use super::*;

fn image(entry: u32, code: &[u8], data: &[u8], bss: u32, stack: u32, reserved: u32) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    for word in [
        entry,
        code.len() as u32,
        data.len() as u32,
        bss,
        stack,
        reserved,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    bytes.extend_from_slice(code);
    bytes.extend_from_slice(data);
    bytes
}

#[test]
fn a_good_image_is_laid_out_page_by_page() {
    let bytes = image(2, &[0x90; 5000], b"data", 100, 8192, 0);
    let parsed = Image::parse(&bytes).unwrap();
    assert_eq!(parsed.code.len(), 5000);
    assert_eq!(parsed.data, b"data");
    assert_eq!(parsed.entry_point(), LOAD_BASE + 2);
    assert_eq!(parsed.data_base(), LOAD_BASE + 2 * PAGE_SIZE);
    assert_eq!(parsed.data_span(), PAGE_SIZE);
    assert_eq!(parsed.stack_base(), STACK_TOP - 8192);
}

#[test]
fn every_malformed_header_is_refused_with_its_reason() {
    let good = image(0, &[0xC3], &[], 0, 4096, 0);
    assert!(Image::parse(&good).is_ok());
    assert_eq!(Image::parse(&good[..31]), Err(ImageError::TooShort(31)));
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(Image::parse(&bad_magic), Err(ImageError::BadMagic));
    assert_eq!(
        Image::parse(&image(0, &[0xC3], &[], 0, 4096, 7)),
        Err(ImageError::Reserved(7))
    );
    assert_eq!(
        Image::parse(&image(0, &[], &[], 0, 4096, 0)),
        Err(ImageError::NoCode)
    );
    assert_eq!(
        Image::parse(&image(1, &[0xC3], &[], 0, 4096, 0)),
        Err(ImageError::EntryOutsideCode { entry: 1, code: 1 })
    );
    let mut truncated = image(0, &[0xC3; 8], &[], 0, 4096, 0);
    truncated.pop();
    assert_eq!(
        Image::parse(&truncated),
        Err(ImageError::SizeMismatch {
            declared: 40,
            actual: 39
        })
    );
    assert_eq!(
        Image::parse(&image(0, &[0xC3], &[], u32::MAX, 4096, 0)),
        Err(ImageError::TooLarge)
    );
    assert_eq!(
        Image::parse(&image(0, &[0xC3], &[], 0, (MAX_STACK + 1) as u32, 0)),
        Err(ImageError::TooLarge)
    );
    assert_eq!(
        Image::parse(&image(0, &[0xC3], &[], 0, 100, 0)),
        Err(ImageError::NoStack)
    );
}

#[test]
fn random_bytes_never_panic_the_parser() {
    let mut seed = 0x1234_5678_u64;
    for len in 0..200 {
        let mut bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        if len >= 8 && seed.is_multiple_of(2) {
            bytes[..8].copy_from_slice(&MAGIC);
        }
        let _ = Image::parse(&bytes);
    }
}
