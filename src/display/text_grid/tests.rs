//! Host tests of the text grid: the terminal rules on small grids, and
//! property tests that a renderer drawing only the changes shows the grid,
//! that text survives wrapping and scrolling, and that word wrap keeps words.

use super::*;
use proptest::prelude::*;

fn grid(slots: &mut Vec<Slot>, columns: usize, rows: usize, wrap: Wrap) -> TextGrid<'_> {
    slots.resize(columns * rows, Slot::EMPTY);
    TextGrid::new(slots, columns, rows, wrap).unwrap()
}

/// The characters of a row, trailing blanks included.
fn row_text(grid: &TextGrid<'_>, row: usize) -> String {
    let (columns, _) = grid.size();
    (0..columns)
        .map(|column| grid.cell(column, row).unwrap().character)
        .collect()
}

fn screen_text(grid: &TextGrid<'_>) -> Vec<String> {
    (0..grid.size().1).map(|row| row_text(grid, row)).collect()
}

/// A fake screen: what a renderer drew from the grid's changes.
struct Screen {
    columns: usize,
    cells: Vec<Option<Cell>>,
    draws: usize,
}

impl Screen {
    fn new(grid: &TextGrid<'_>) -> Self {
        let (columns, rows) = grid.size();
        Self {
            columns,
            cells: vec![None; columns * rows],
            draws: 0,
        }
    }

    fn draw(&mut self, grid: &mut TextGrid<'_>) {
        grid.drain_changes(|column, row, cell| {
            self.cells[row * self.columns + column] = Some(cell);
            self.draws += 1;
        });
    }

    fn shows(&self, grid: &TextGrid<'_>) -> bool {
        self.cells
            .iter()
            .enumerate()
            .all(|(index, shown)| *shown == grid.cell(index % self.columns, index / self.columns))
    }
}

#[test]
fn rejects_unusable_storage() {
    let mut slots = vec![Slot::EMPTY; 6];
    assert_eq!(
        TextGrid::new(&mut slots, 0, 3, Wrap::AtColumn).err(),
        Some(GridError::Empty)
    );
    assert_eq!(
        TextGrid::new(&mut slots, 3, 0, Wrap::AtColumn).err(),
        Some(GridError::Empty)
    );
    assert_eq!(
        TextGrid::new(&mut slots, 4, 2, Wrap::AtColumn).err(),
        Some(GridError::StorageTooSmall)
    );
    assert_eq!(
        TextGrid::new(&mut slots, usize::MAX, 2, Wrap::AtColumn).err(),
        Some(GridError::StorageTooSmall)
    );
    let grid = TextGrid::new(&mut slots, 2, 2, Wrap::AtColumn).unwrap();
    assert_eq!(grid.size(), (2, 2));
    assert_eq!(grid.cell(2, 0), None);
    assert_eq!(grid.cell(0, 2), None);
}

#[test]
fn writes_at_the_cursor_in_the_current_colour() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 8, 2, Wrap::AtColumn);
    grid.write_str("ok ");
    grid.set_color(Color::Error);
    grid.write_str("no");
    assert_eq!(row_text(&grid, 0), "ok no   ");
    assert_eq!(grid.cursor(), (5, 0));
    assert_eq!(grid.cell(0, 0).unwrap().color, Color::Normal);
    assert_eq!(
        grid.cell(3, 0),
        Some(Cell {
            character: 'n',
            color: Color::Error
        })
    );
}

#[test]
fn control_characters_move_the_cursor() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 6, 3, Wrap::AtColumn);
    grid.write_str("abc\rX\nde\u{8}\u{8}\u{8}f");
    assert_eq!(screen_text(&grid), ["Xbc   ", "f     ", "      "]);
    // What the shell echoes for a backspace: back, blank, back.
    grid.write_str("gh\u{8} \u{8}");
    assert_eq!(row_text(&grid, 1), "fg    ");
    assert_eq!(grid.cursor(), (2, 1));
    // Characters with no meaning take a cell; the screen decides their look.
    grid.write_str("\té");
    assert_eq!(row_text(&grid, 1), "fg\té  ");
}

#[test]
fn a_full_row_wraps_only_when_more_text_follows() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 3, 3, Wrap::AtColumn);
    grid.write_str("abc");
    assert_eq!(grid.cursor(), (3, 0));
    grid.write_str("\nd");
    assert_eq!(screen_text(&grid), ["abc", "d  ", "   "]);
    grid.write_str("efgh");
    assert_eq!(screen_text(&grid), ["abc", "def", "gh "]);
    // Backspace on a full row blanks its last cell.
    grid.write_str("\rxyz\u{8}");
    assert_eq!(row_text(&grid, 2), "xy ");
}

#[test]
fn scrolls_up_at_the_bottom() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 2, 2, Wrap::AtColumn);
    grid.write_str("abcde");
    assert_eq!(screen_text(&grid), ["cd", "e "]);
    grid.set_color(Color::Error);
    grid.write_str("\n");
    // The new row is blank in the normal colour, whatever colour wrote the break.
    assert_eq!(screen_text(&grid), ["e ", "  "]);
    assert_eq!(grid.cell(1, 1), Some(Cell::BLANK));
    assert_eq!(grid.cursor(), (0, 1));
}

#[test]
fn word_wrap_moves_the_word_that_does_not_fit() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 8, 3, Wrap::AtWord);
    grid.write_str("one two three");
    assert_eq!(screen_text(&grid), ["one two ", "three   ", "        "]);
    assert_eq!(grid.cursor(), (5, 1));
    // A space at a full row is the break itself: no row starts with it.
    grid.write_str("\rabcdefgh ijk");
    assert_eq!(screen_text(&grid), ["one two ", "abcdefgh", "ijk     "]);
    // A word longer than a row breaks at the column.
    grid.write_str("\nabcdefghij");
    assert_eq!(screen_text(&grid), ["ijk     ", "abcdefgh", "ij      "]);
}

#[test]
fn word_wrap_keeps_colours_and_scrolls() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 5, 2, Wrap::AtWord);
    grid.write_str("ab\nc ");
    grid.set_color(Color::Warning);
    grid.write_str("def");
    assert_eq!(screen_text(&grid), ["ab   ", "c def"]);
    grid.write_str("g");
    assert_eq!(screen_text(&grid), ["c    ", "defg "]);
    assert_eq!(grid.cell(0, 1).unwrap().color, Color::Warning);
    assert_eq!(grid.cell(4, 0), Some(Cell::BLANK));
}

#[test]
fn a_one_row_grid_survives_word_wrap() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 4, 1, Wrap::AtWord);
    grid.write_str("ab cd");
    assert_eq!(screen_text(&grid), ["d   "]);
}

#[test]
fn draws_every_cell_first_then_only_changes() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 10, 4, Wrap::AtColumn);
    let mut screen = Screen::new(&grid);
    screen.draw(&mut grid);
    assert_eq!(screen.draws, 40);
    assert!(screen.shows(&grid));
    screen.draws = 0;
    grid.write_str("hi");
    screen.draw(&mut grid);
    assert_eq!(screen.draws, 2);
    // Rewriting a cell with what it shows draws nothing.
    screen.draws = 0;
    grid.write_str("\rhi");
    screen.draw(&mut grid);
    assert_eq!(screen.draws, 0);
}

#[test]
fn scrolling_redraws_only_cells_whose_content_moved() {
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 10, 3, Wrap::AtColumn);
    let mut screen = Screen::new(&grid);
    grid.write_str("aaaa\nbb\ncccccc");
    screen.draw(&mut grid);
    screen.draws = 0;
    grid.write_str("\n");
    screen.draw(&mut grid);
    // Row 0: aaaa -> bb (4 cells), row 1: bb -> cccccc (6), row 2: cccccc -> blank (6).
    assert_eq!(screen.draws, 4 + 6 + 6);
    assert!(screen.shows(&grid));
    // Blank rows scrolling over blank rows cost nothing.
    screen.draws = 0;
    grid.write_str("\n\n\n\n");
    screen.draw(&mut grid);
    assert_eq!(screen.draws, 6 + 6);
    assert!(screen.shows(&grid));
}

#[test]
fn writes_through_core_fmt() {
    use core::fmt::Write;
    let mut slots = Vec::new();
    let mut grid = grid(&mut slots, 12, 1, Wrap::AtColumn);
    write!(grid, "{} frames", 42).unwrap();
    assert_eq!(row_text(&grid, 0), "42 frames   ");
}

/// What a test writes: text, a colour change, or a renderer drawing.
#[derive(Clone, Debug)]
enum Step {
    Text(String),
    Color(Color),
    Draw,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let color = prop_oneof![
        Just(Color::Normal),
        Just(Color::Warning),
        Just(Color::Error),
        Just(Color::Good),
    ];
    let step = prop_oneof![
        6 => "[ab \n\r\u{8}é]{0,12}".prop_map(Step::Text),
        1 => color.prop_map(Step::Color),
        2 => Just(Step::Draw),
    ];
    proptest::collection::vec(step, 0..40)
}

fn wrap() -> impl Strategy<Value = Wrap> {
    prop_oneof![Just(Wrap::AtColumn), Just(Wrap::AtWord)]
}

/// The rows a text occupies on an endless grid that breaks at the column.
fn rows_at_column(text: &str, columns: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let characters: Vec<char> = line.chars().collect();
        if characters.is_empty() {
            rows.push(String::new());
        }
        rows.extend(characters.chunks(columns).map(|row| row.iter().collect()));
    }
    rows
}

proptest! {
    #![proptest_config(mm::testing::cases(2_000))]

    /// A renderer that draws only what `drain_changes` reports shows
    /// exactly the grid after every draw, whatever was written.
    #[test]
    fn drawing_the_changes_shows_the_grid(
        columns in 1usize..7,
        rows in 1usize..5,
        wrap in wrap(),
        steps in steps(),
    ) {
        let mut slots = Vec::new();
        let mut grid = grid(&mut slots, columns, rows, wrap);
        let mut screen = Screen::new(&grid);
        for step in steps {
            match step {
                Step::Text(text) => grid.write_str(&text),
                Step::Color(color) => grid.set_color(color),
                Step::Draw => {
                    screen.draw(&mut grid);
                    prop_assert!(screen.shows(&grid));
                }
            }
            let (column, row) = grid.cursor();
            prop_assert!(column <= columns && row < rows);
        }
        screen.draw(&mut grid);
        prop_assert!(screen.shows(&grid));
    }

    /// Breaking at the column, the grid shows the last rows of the text
    /// cut into rows of `columns` characters.
    #[test]
    fn text_survives_wrapping_and_scrolling(
        columns in 1usize..7,
        rows in 1usize..5,
        text in "[ab \n]{0,40}",
    ) {
        let mut slots = Vec::new();
        let mut grid = grid(&mut slots, columns, rows, Wrap::AtColumn);
        grid.write_str(&text);
        let expected = rows_at_column(&text, columns);
        let visible = &expected[expected.len().saturating_sub(rows)..];
        let shown = screen_text(&grid);
        for (row, line) in visible.iter().enumerate() {
            prop_assert_eq!(shown[row].trim_end(), line.trim_end());
        }
        for row in &shown[visible.len()..] {
            prop_assert_eq!(row.trim_end(), "");
        }
    }

    /// With word wrap and a grid tall enough, a word no longer than a row
    /// is never split, and the words read back in order.
    #[test]
    fn word_wrap_never_splits_a_word_that_fits(
        columns in 1usize..9,
        words in proptest::collection::vec(("[a-z]{1,8}", "[ \n]{1,2}"), 0..12),
    ) {
        let text: String = words.iter().map(|(word, gap)| format!("{word}{gap}")).collect();
        let mut slots = Vec::new();
        let mut grid = grid(&mut slots, columns, 300, Wrap::AtWord);
        grid.write_str(&text);
        let shown: Vec<String> = screen_text(&grid)
            .iter()
            .flat_map(|row| row.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|piece| !piece.is_empty())
            .collect();
        let mut pieces = shown.iter();
        for (word, _) in &words {
            if word.len() <= columns {
                prop_assert_eq!(pieces.next(), Some(word));
            } else {
                // A longer word breaks at the column, into whole rows first.
                let mut rest = word.as_str();
                while !rest.is_empty() {
                    let piece = pieces.next().map(String::as_str);
                    prop_assert!(piece.is_some_and(|piece| rest.starts_with(piece)));
                    rest = &rest[piece.unwrap().len()..];
                }
            }
        }
        prop_assert_eq!(pieces.next(), None);
    }
}
