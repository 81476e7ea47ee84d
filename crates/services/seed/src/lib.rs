//! The generated shop. Every function is pure and keyed by a product's
//! index, so catalog, inventory and reviews, each seeding its own store,
//! agree on the same products in every run on every machine. The texts are
//! assembled from varied templates so payload sizes look like a real shop's.
//!
//! It does no I/O and knows nothing about stores or gRPC beyond the
//! generated message types it fills.

#![forbid(unsafe_code)]

use prost_types::Timestamp;
use tailor_proto::catalog::v1::{Category, Image, ImageVariant, Product};
use tailor_proto::inventory::v1::WarehouseStock;
use tailor_proto::reviews::v1::Review;
use tailor_proto::r#type::v1::Money;

/// 2025-01-01T00:00:00Z: the generated data's times count from here.
const EPOCH: i64 = 1_735_689_600;
const EIGHTEEN_MONTHS: u64 = 18 * 30 * 24 * 3600;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn new(index: u32, salt: u64) -> Self {
        Rng(u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

struct CategorySpec {
    id: &'static str,
    name: &'static str,
    nouns: &'static [&'static str],
    materials: &'static [&'static str],
    price: (i64, i64),
}

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        id: "cat-kitchen",
        name: "Kitchen",
        nouns: &[
            "Coffee Mug",
            "Chef's Knife",
            "Cutting Board",
            "Saucepan",
            "Teapot",
            "Mixing Bowl",
        ],
        materials: &["Stoneware", "Steel", "Oak", "Cast Iron", "Porcelain"],
        price: (499, 14999),
    },
    CategorySpec {
        id: "cat-living",
        name: "Living Room",
        nouns: &[
            "Throw Blanket",
            "Cushion Cover",
            "Floor Lamp",
            "Side Table",
            "Vase",
            "Rug",
        ],
        materials: &["Wool", "Linen", "Walnut", "Ceramic", "Cotton"],
        price: (1499, 29999),
    },
    CategorySpec {
        id: "cat-bedroom",
        name: "Bedroom",
        nouns: &[
            "Duvet Cover",
            "Pillow",
            "Bedside Lamp",
            "Blanket",
            "Sheet Set",
        ],
        materials: &["Cotton", "Linen", "Silk", "Bamboo"],
        price: (1999, 24999),
    },
    CategorySpec {
        id: "cat-bath",
        name: "Bath",
        nouns: &["Bath Towel", "Soap Dish", "Bath Mat", "Toothbrush Holder"],
        materials: &["Cotton", "Bamboo", "Marble", "Terrazzo"],
        price: (699, 7999),
    },
    CategorySpec {
        id: "cat-garden",
        name: "Garden",
        nouns: &[
            "Planter",
            "Watering Can",
            "Garden Chair",
            "Pruning Shears",
            "Lantern",
        ],
        materials: &["Terracotta", "Zinc", "Teak", "Steel"],
        price: (999, 39999),
    },
    CategorySpec {
        id: "cat-office",
        name: "Office",
        nouns: &[
            "Desk Organiser",
            "Notebook",
            "Desk Lamp",
            "Pen Set",
            "Monitor Stand",
        ],
        materials: &["Leather", "Beech", "Aluminium", "Recycled Paper"],
        price: (599, 19999),
    },
    CategorySpec {
        id: "cat-outdoor",
        name: "Outdoor",
        nouns: &[
            "Backpack",
            "Water Bottle",
            "Camping Mug",
            "Picnic Blanket",
            "Head Torch",
        ],
        materials: &["Nylon", "Steel", "Canvas", "Recycled Polyester"],
        price: (1299, 17999),
    },
    CategorySpec {
        id: "cat-kids",
        name: "Kids",
        nouns: &[
            "Building Blocks",
            "Plush Bear",
            "Night Light",
            "Puzzle",
            "Lunch Box",
        ],
        materials: &["Beech", "Organic Cotton", "Silicone", "Cardboard"],
        price: (799, 5999),
    },
    CategorySpec {
        id: "cat-fitness",
        name: "Fitness",
        nouns: &[
            "Yoga Mat",
            "Kettlebell",
            "Resistance Band",
            "Foam Roller",
            "Jump Rope",
        ],
        materials: &["Cork", "Cast Iron", "Natural Rubber", "EVA Foam"],
        price: (999, 12999),
    },
    CategorySpec {
        id: "cat-audio",
        name: "Audio",
        nouns: &["Bluetooth Speaker", "Headphones", "Turntable", "Radio"],
        materials: &["Walnut", "Aluminium", "Fabric", "Recycled Plastic"],
        price: (2999, 49999),
    },
    CategorySpec {
        id: "cat-pets",
        name: "Pets",
        nouns: &["Dog Bed", "Cat Bowl", "Leash", "Scratching Post"],
        materials: &["Felt", "Ceramic", "Leather", "Sisal"],
        price: (899, 11999),
    },
    CategorySpec {
        id: "cat-travel",
        name: "Travel",
        nouns: &[
            "Carry-on Case",
            "Packing Cubes",
            "Travel Pillow",
            "Toiletry Bag",
        ],
        materials: &["Polycarbonate", "Nylon", "Memory Foam", "Waxed Canvas"],
        price: (1499, 34999),
    },
];

const BRANDS: &[&str] = &[
    "Nordhavn",
    "Altamura",
    "Kestrel & Co",
    "Brightwater",
    "Moss Lane",
    "Oaken",
    "Fjellstad",
    "Casa Lume",
    "Halden",
    "Tidewell",
    "Birchmore",
    "Vantage",
    "Solvik",
    "Marlow Works",
    "Ember Hill",
    "Quill",
    "Stonebridge",
    "Ardent",
    "Luma",
    "Greyfield",
    "Harbour & Pine",
    "Kinfolk Supply",
    "Riverton",
    "Aster",
    "Coldwater",
    "Pellucid",
    "Wren",
    "Juniper Row",
    "Otterly",
    "Saltmarsh",
];
const COLOURS: &[&str] = &[
    "Matte Sage",
    "Charcoal",
    "Sand",
    "Ocean Blue",
    "Terracotta",
    "Snow White",
    "Forest Green",
    "Mustard",
    "Slate Grey",
    "Blush",
];
const SIZES: &[&str] = &[
    "Small", "Medium", "Large", "350 ml", "500 ml", "1 l", "Set of 2", "Set of 4",
];
const OPENINGS: &[&str] = &[
    "Designed in a small studio and made to last for years, the {title} brings quiet craftsmanship to everyday routines.",
    "The {title} is what happens when {brand} sets out to make a {noun} that is as pleasant to use on the thousandth day as on the first.",
    "Meet the {title}: a {noun} in {material}, finished in {colour}, built for people who care about the details.",
];
const MIDDLES: &[&str] = &[
    "Every piece is {material} chosen for its durability, then finished by hand so that no two are exactly alike. Small variations in texture are part of its character, not flaws.",
    "We tested it for months in real homes before it went on sale. The result is a {noun} that feels balanced, cleans easily and looks good left out on display.",
    "Its proportions were refined over a dozen prototypes: the weight sits where your hand expects it, the edges are softened, and the surface resists marks and fading.",
    "The {colour} finish is applied in several thin layers, which gives it depth in daylight and a warm glow in the evening.",
    "Packed in recycled, plastic-free packaging, it ships from our European warehouses and arrives ready to use.",
];
const CARE: &[&str] = &[
    "Care: wipe clean with a damp cloth; avoid abrasive cleaners. Covered by a two-year warranty.",
    "Care: dishwasher and microwave safe where the material allows; see the label. Two-year warranty included.",
    "Care: store in a dry place and treat {material} parts with a little oil once a season. Backed by our five-year promise.",
];
const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Chiara", "David", "Elif", "Femi", "Greta", "Hugo", "Ines", "Jonas", "Kaja",
    "Luca", "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sami", "Tove", "Yusuf",
];
const REVIEW_TITLES: &[(i32, &str)] = &[
    (5, "Exactly what I hoped for"),
    (5, "Beautiful and practical"),
    (5, "Worth every cent"),
    (4, "Very good, one small niggle"),
    (4, "Solid quality"),
    (3, "Nice, but not perfect"),
    (3, "Does the job"),
    (2, "Looked better in the photos"),
    (1, "Arrived damaged"),
];
const REVIEW_SENTENCES: &[&str] = &[
    "I have been using the {noun} every day for a few weeks now.",
    "The {material} feels sturdy and well made.",
    "Delivery was quick and the packaging was plastic-free, which I appreciate.",
    "The colour is slightly different from the photos but still lovely.",
    "It replaced a cheaper one that broke after a month, and the difference is obvious.",
    "My partner liked it so much we ordered a second one as a gift.",
    "If I am honest, it is a bit pricey for what it is.",
    "Customer service answered my question within a day.",
    "Cleaning it is easy, which matters more than I expected.",
    "After a month of use there are no visible signs of wear.",
    "{brand} clearly thought about how people actually use a {noun}.",
    "It is heavier than I expected, which I count as a good thing.",
];

fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{key}}}"), value)
    })
}

/// `prod-000042` for index 42; indexes start at 1.
pub fn product_id(index: u32) -> String {
    format!("prod-{index:06}")
}

/// The index of a generated product id, if it is one.
pub fn product_index(id: &str) -> Option<u32> {
    id.strip_prefix("prod-")?.parse().ok()
}

fn category_of(rng: &mut Rng) -> &'static CategorySpec {
    &CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize]
}

/// Every category.
pub fn categories() -> Vec<Category> {
    CATEGORIES
        .iter()
        .map(|c| Category {
            id: c.id.to_owned(),
            name: c.name.to_owned(),
            product_count: 0,
        })
        .collect()
}

fn timestamp(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 0 }
}

/// The product at `index`.
pub fn product(index: u32) -> Product {
    let mut rng = Rng::new(index, 0x70726f64);
    let category = category_of(&mut rng);
    let brand = rng.pick(BRANDS);
    let noun = rng.pick(category.nouns);
    let material = rng.pick(category.materials);
    let colour = rng.pick(COLOURS);
    let size = rng.pick(SIZES);
    let title = format!("{brand} {material} {noun}, {size}, {colour}");
    let id = product_id(index);
    let vars = [
        ("title", title.as_str()),
        ("brand", brand),
        ("noun", &noun.to_lowercase()),
        ("material", &material.to_lowercase()),
        ("colour", &colour.to_lowercase()),
    ];
    let mut paragraphs = vec![fill(rng.pick(OPENINGS), &vars)];
    for _ in 0..rng.range(2, 4) {
        let middle: Vec<String> = (0..rng.range(2, 3))
            .map(|_| fill(rng.pick(MIDDLES), &vars))
            .collect();
        paragraphs.push(middle.join(" "));
    }
    paragraphs.push(fill(rng.pick(CARE), &vars));
    let price = rng.range(category.price.0 / 100, category.price.1 / 100) * 100 - 1;
    let images = (1..=rng.range(3, 6))
        .map(|n| Image {
            alt_text: format!("{title}, view {n}"),
            variants: [160, 320, 640, 1280, 2048]
                .into_iter()
                .map(|width| ImageVariant {
                    url: format!("https://img.tailor.example/p/{id}/{n}-{width}w.jpg"),
                    width,
                    height: width * 4 / 5,
                })
                .collect(),
        })
        .collect();
    let created = EPOCH + rng.below(EIGHTEEN_MONTHS) as i64;
    let updated = created + rng.below(90 * 24 * 3600) as i64;
    Product {
        sku: format!("{}-{index:06}", &category.id[4..7].to_uppercase()),
        title,
        brand: brand.to_owned(),
        category_id: category.id.to_owned(),
        category_name: category.name.to_owned(),
        description: paragraphs.join("\n\n"),
        price: Some(Money {
            currency_code: "EUR".to_owned(),
            amount_minor: price,
        }),
        images,
        attributes: [
            ("colour", colour.to_owned()),
            ("material", material.to_owned()),
            ("weight_g", rng.range(80, 6000).to_string()),
            (
                "dimensions_cm",
                format!(
                    "{} x {} x {}",
                    rng.range(5, 90),
                    rng.range(5, 90),
                    rng.range(2, 60)
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
        tags: vec![
            category.name.to_lowercase(),
            noun.to_lowercase(),
            material.to_lowercase(),
            colour.to_lowercase(),
        ],
        create_time: Some(timestamp(created)),
        update_time: Some(timestamp(updated)),
        id,
    }
}

/// The warehouses: id, name, working days to ship.
pub const WAREHOUSES: [(&str, &str, i32); 4] = [
    ("wh-berlin", "Berlin", 1),
    ("wh-rotterdam", "Rotterdam", 2),
    ("wh-milan", "Milan", 3),
    ("wh-warsaw", "Warsaw", 4),
];

/// Stock of the product at `index` in every warehouse (none reserved).
pub fn stock(index: u32) -> Vec<WarehouseStock> {
    let mut rng = Rng::new(index, 0x73746f63);
    let sold_out = rng.below(10) == 0;
    let low = rng.below(8) == 0;
    WAREHOUSES
        .iter()
        .map(|(id, name, ship_days)| {
            let on_hand = if sold_out {
                0
            } else if low {
                rng.range(0, 3) as i32
            } else {
                rng.range(0, 250) as i32
            };
            WarehouseStock {
                warehouse_id: (*id).to_owned(),
                warehouse_name: (*name).to_owned(),
                on_hand,
                reserved: 0,
                available: on_hand,
                ship_days: *ship_days,
            }
        })
        .collect()
}

/// Reviews of the product at `index`, oldest first.
pub fn reviews(index: u32) -> Vec<Review> {
    let mut rng = Rng::new(index, 0x72657669);
    let product = product(index);
    let noun = product.tags[1].clone();
    let material = product.tags[2].clone();
    let vars = [
        ("noun", noun.as_str()),
        ("material", material.as_str()),
        ("brand", product.brand.as_str()),
    ];
    let count = match rng.below(100) {
        0..15 => 0,
        15..60 => rng.range(1, 6),
        60..90 => rng.range(6, 15),
        _ => rng.range(15, 40),
    };
    let created = product.create_time.map_or(EPOCH, |t| t.seconds);
    (0..count)
        .map(|n| {
            let (rating, title) = REVIEW_TITLES[rng.below(REVIEW_TITLES.len() as u64) as usize];
            let paragraphs = match rng.below(10) {
                0..4 => 1,
                4..8 => 2,
                _ => 4,
            };
            let body: Vec<String> = (0..paragraphs)
                .map(|_| {
                    (0..rng.range(1, 4))
                        .map(|_| fill(rng.pick(REVIEW_SENTENCES), &vars))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let author = format!(
                "{} {}.",
                rng.pick(FIRST_NAMES),
                (b'A' + rng.below(26) as u8) as char
            );
            Review {
                id: format!("rev-{index:06}-{n:02}"),
                product_id: product.id.clone(),
                author_name: author,
                rating,
                title: title.to_owned(),
                body: body.join("\n\n"),
                helpful_count: rng.below(60) as i32,
                create_time: Some(timestamp(
                    created + (n + 1) * 86_400 + rng.below(86_400) as i64,
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn the_same_index_always_gives_the_same_shop() {
        assert_eq!(product(42), product(42));
        assert_eq!(stock(42), stock(42));
        assert_eq!(reviews(42), reviews(42));
        assert_ne!(product(42).title, product(43).title);
        assert_eq!(product(42).id, "prod-000042");
        assert_eq!(product_index("prod-000042"), Some(42));
    }

    #[test]
    fn ten_thousand_products_look_like_a_real_shop() {
        let products: Vec<Product> = (1..=10_000).map(product).collect();
        let titles: HashSet<&str> = products.iter().map(|p| p.title.as_str()).collect();
        assert!(titles.len() > 9_000, "{} distinct titles", titles.len());
        let average = products.iter().map(|p| p.description.len()).sum::<usize>() / products.len();
        assert!(
            (600..=2_500).contains(&average),
            "average description {average} bytes"
        );
        for p in &products {
            let price = p.price.as_ref().unwrap().amount_minor;
            assert!((399..=50_000).contains(&price), "{price}");
            assert!((3..=6).contains(&p.images.len()));
        }
        let sold_out = (1..=10_000)
            .filter(|i| stock(*i).iter().all(|w| w.on_hand == 0))
            .count();
        assert!((500..=2_000).contains(&sold_out), "{sold_out} sold out");
        let reviewed: usize = (1..=1_000).map(|i| reviews(i).len()).sum();
        assert!((3_000..=12_000).contains(&reviewed), "{reviewed} reviews");
        assert!(
            (1..=1_000)
                .flat_map(reviews)
                .all(|r| (1..=5).contains(&r.rating))
        );
    }
}
